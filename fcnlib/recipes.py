"""Training recipes: :class:`TrainConfig` (every training option) and the presets.

:data:`RECIPES` holds the paper's recipe (SGD, momentum 0.9, batch 20, fixed lr), the official
repository's "heavy" one (batch 1, momentum 0.99, summed loss, tiny lr) and a modern "fast" one
for the CPU lab bench; :func:`stage_recipe` adds the learning rate that a backbone and a stage of
the staged 32s -> 16s -> 8s training call for. :mod:`fcnlib.train` re-exports all of them.

>>> config = recipe("fast", epochs=2)
>>> config.optimizer, config.schedule
('adamw', 'onecycle')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fcnlib.data.labels import check_ignore_index
from fcnlib.precision import AMP_CHOICES

__all__ = [
    "FAST_IMAGENET",
    "PAPER_LR",
    "RECIPES",
    "STAGE_LR_FACTOR",
    "TrainConfig",
    "recipe",
    "stage_recipe",
]

_CHOICES = {
    "optimizer": ("sgd", "adamw"),
    "loss_reduction": ("mean", "sum"),
    "schedule": ("fixed", "poly", "cosine", "onecycle"),
    "amp": AMP_CHOICES,
}


@dataclass(frozen=True)
class TrainConfig:
    """Every training option; frozen, saved as a plain dict inside each checkpoint.

    The defaults are the paper's recipe for FCN-VGG16 (see :data:`RECIPES`). ``loss_sampling``
    keeps a random fraction ``p`` of labelled positions per step (the paper's loss sampling, which
    did not speed convergence in wall time); ``class_weights`` is ``None``, ``"balanced"``
    (inverse frequency from the training labels) or one weight per class. ``warmup_steps`` ramps
    the lr up linearly (for "onecycle" it is the rise phase, default 30% of training).
    ``cudnn_benchmark`` (CUDA only) lets cuDNN pick the fastest convolution algorithm for each
    input shape: a gain when shapes repeat (fixed-size crops), a cost when every image differs.
    ``eval_batch_size`` is the validation batch size (default: ``batch_size``); whole VOC images
    differ in size and do not stack, so :func:`stage_recipe` sets it to 1 for them.
    ``ignore_index`` is the void label that neither loss nor metrics count: an int, 0..255 or
    negative (:func:`fcnlib.data.labels.check_ignore_index`).
    """

    optimizer: str = "sgd"
    lr: float = 1e-4
    momentum: float = 0.9  # SGD momentum; Adam's beta1
    weight_decay: float = 5e-4
    bias_lr_mult: float = 2.0
    batch_size: int = 20
    epochs: int = 10
    loss_reduction: str = "mean"
    schedule: str = "fixed"
    warmup_steps: int = 0
    loss_sampling: float | None = None
    class_weights: str | tuple[float, ...] | None = None
    ignore_index: int = 255
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = True  # on CUDA: let cuDNN time its algorithms for each input shape
    eval_batch_size: int | None = None  # None: batch_size; 1 for images of different sizes
    grad_clip: float | None = None
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        # a plain int, so that a checkpoint holding this config loads with weights_only=True
        object.__setattr__(self, "ignore_index", check_ignore_index(self.ignore_index))
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1 or None, got {self.eval_batch_size}")
        if not (self.lr > 0 and self.batch_size >= 1 and self.epochs >= 0):
            raise ValueError(
                f"need lr > 0, batch_size >= 1 and epochs >= 0, got lr={self.lr}, "
                f"batch_size={self.batch_size}, epochs={self.epochs}"
            )
        if self.loss_sampling is not None and not 0 < self.loss_sampling <= 1:
            raise ValueError(
                f"loss_sampling is the fraction of positions kept, in (0, 1], or None for all; "
                f"got {self.loss_sampling}"
            )
        weights = self.class_weights
        if isinstance(weights, str) and weights != "balanced":
            raise ValueError(f"class_weights must be None, 'balanced' or a list, got {weights!r}")
        if weights is not None and not isinstance(weights, str):
            # a tuple keeps the frozen config hashable; a list reads better in a checkpoint
            object.__setattr__(self, "class_weights", tuple(float(w) for w in weights))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed: ``config.replace(lr=1e-3)``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only, so checkpoints load with ``weights_only=True``."""
        out = dataclasses.asdict(self)
        if isinstance(out["class_weights"], tuple):
            out["class_weights"] = list(out["class_weights"])
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a newer fcnlib's checkpoint?)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"unknown TrainConfig fields {unknown}; was it saved by another fcnlib?"
            )
        return cls(**values)


RECIPES: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    # A summed loss over ~250k pixels per image is why the official lr is so tiny.
    "heavy": TrainConfig(lr=1e-10, momentum=0.99, batch_size=1, loss_reduction="sum"),
    # Adam already scales each parameter's step, so the Caffe-era 2x bias lr is dropped.
    "fast": TrainConfig(
        optimizer="adamw",
        lr=3e-3,
        weight_decay=1e-4,
        bias_lr_mult=1.0,
        batch_size=16,
        schedule="onecycle",
        amp="auto",
    ),
}


def recipe(name: str, **overrides: Any) -> TrainConfig:
    """A preset from :data:`RECIPES` with some fields changed.

    - ``"paper"``: SGD, momentum 0.9, batch 20, fixed lr 1e-4 for VGG16 (the paper uses 1e-3 for
      AlexNet and 5e-5 for GoogLeNet), weight decay 5e-4, mean loss, biases at 2x lr.
    - ``"heavy"``: the official repository's recipe: batch 1, momentum 0.99, summed loss, lr
      1e-10 for FCN-32s (1e-12 for FCN-16s, 1e-14 for FCN-8s), weight decay 5e-4, fixed lr.
    - ``"fast"``: not from the paper; AdamW 3e-3, one-cycle schedule, batch 16, for the lab bench.

    >>> recipe("heavy", lr=1e-12).lr
    1e-12
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: expected one of {sorted(RECIPES)}")
    return RECIPES[name].replace(**overrides)


# The paper's learning rates per backbone (section 4.1; mean loss, batch 20).
PAPER_LR: dict[str, float] = {
    "alexnet": 1e-3,
    "vgg16": 1e-4,
    "vgg16_caffe": 1e-4,
    "googlenet": 5e-5,
}
# Staged training lowers the lr at each stage (32s -> 16s -> 8s): 100x in the official recipe
# (1e-10, 1e-12, 1e-14); fcnlib lowers the paper recipe the same way and "fast" by 3x.
STAGE_LR_FACTOR: dict[str, float] = {"paper": 1e-2, "heavy": 1e-2, "fast": 1 / 3}
# "fast" on an ImageNet backbone (500-pixel crops): a fine-tuning lr for AdamW and a batch that
# fits one GPU. fcnlib's choice, not the paper's; not yet validated on VOC.
FAST_IMAGENET: dict[str, float | int] = {"lr": 1e-4, "batch_size": 8}


def _is_lab(backbone: str) -> bool:
    # The ImageNet backbones are exactly the paper's, those PAPER_LR knows (a test checks it
    # against fcnlib.backbones.BACKBONES): recipes need no model code to tell them apart.
    return backbone not in PAPER_LR


def stage_recipe(
    name: str,
    *,
    backbone: str | None = None,
    stride: int = 32,
    staged: bool = False,
    whole_images: bool = False,
    **overrides: Any,
) -> TrainConfig:
    """A recipe for one net of the staged 32s -> 16s -> 8s training: :func:`recipe` plus the
    learning rate that the backbone and the stage call for.

    Args:
        name: ``"paper"``, ``"heavy"`` or ``"fast"`` (see :func:`recipe`).
        backbone: with ``"paper"``, the paper's lr for it (:data:`PAPER_LR`; others keep 1e-4);
            with ``"fast"`` and an ImageNet backbone, :data:`FAST_IMAGENET` (lr 1e-4, batch 8)
            instead of the lab bench's 3e-3.
        stride: 32, 16, 8 (or 4): the net being trained.
        staged: the net starts from the next coarser one (:func:`fcnlib.models.init_from`): the lr
            is lowered once per stage below 32, by :data:`STAGE_LR_FACTOR`. Without it (a net
            trained at once from the backbone) the lr stays the stride-32 one.
        whole_images: validation images of different sizes (VOC): ``eval_batch_size=1``.
        overrides: any other :class:`TrainConfig` field (an explicit ``lr`` wins).

    >>> f"{stage_recipe('heavy', stride=8, staged=True).lr:.0e}"  # the official FCN-8s lr
    '1e-14'
    >>> stage_recipe("paper", backbone="alexnet").lr
    0.001
    """
    if stride not in (32, 16, 8, 4):
        raise ValueError(f"stride must be 32, 16, 8 or 4, got {stride!r}")
    config = recipe(name)
    lr = PAPER_LR.get(backbone, config.lr) if name == "paper" else config.lr
    changes: dict[str, Any] = {}
    if name == "fast" and backbone is not None and not _is_lab(backbone):
        # AdamW at the lab's 3e-3 would wreck ImageNet features that have no batch norm
        lr, changes["batch_size"] = FAST_IMAGENET["lr"], FAST_IMAGENET["batch_size"]
    if staged:
        lr *= STAGE_LR_FACTOR[name] ** ((32 // stride).bit_length() - 1)  # 16s: once, 8s: twice
    changes["lr"] = lr
    if whole_images:
        changes["eval_batch_size"] = 1
    return config.replace(**{**changes, **overrides})

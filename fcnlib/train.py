"""Training as plain functions: a loss, the paper's optimizer recipe, one epoch, evaluation, fit.

The paper trains by SGD on whole images with a per-pixel softmax loss. Because the loss is a sum
over output positions, one image is a minibatch of all its receptive-field patches, so nothing
here knows about patches: a model maps ``(N, 3, H, W)`` images to ``(N, C, H, W)`` logits and
:func:`segmentation_loss` compares them with ``(N, H, W)`` labels, skipping void (255).

* :class:`TrainConfig` holds every knob; :data:`RECIPES` has the paper's recipe (SGD, momentum
  0.9, batch 20, fixed lr), the official "heavy" one (batch 1, momentum 0.99, summed loss, tiny
  lr) and a modern "fast" one for the CPU lab bench (all in :mod:`fcnlib.recipes`). Biases
  train at twice the learning rate and without weight decay, as in the official Caffe nets.
* :func:`train_one_epoch`, :func:`evaluate` and :func:`fit` return numbers; nothing is written
  to disk unless a checkpoint path is given. Then :func:`fit` keeps a record of the run beside
  it: the last epoch's checkpoint (:mod:`fcnlib.checkpoint`), the best mean IU's weights, the
  metrics of every epoch as JSON lines and, when TensorBoard is installed, its event files; one
  run at a time, and never over another run's files (:mod:`fcnlib.record`). A run resumed
  from a checkpoint at an epoch boundary replays the same batches and random numbers, so it
  ends bit-identical to an uninterrupted run; a longer resumed run rebuilds its schedule, and a
  diverging one stops before it overwrites the last good checkpoint.
* Device, mixed precision (``amp``), ``channels_last`` and ``torch.compile`` are one-line switches.
* Under ``torchrun`` (see :mod:`fcnlib.distributed`) :func:`fit` trains with
  DistributedDataParallel, one process per GPU; the batch size is then per process.

>>> config = recipe("fast", epochs=2)
>>> config.optimizer, config.schedule
('adamw', 'onecycle')
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, default_collate
from torch.utils.data.distributed import DistributedSampler

from fcnlib.checkpoint import (
    load_checkpoint,
    restore,
    run_files,
    save_checkpoint,
    set_rng_state,
    write_metrics,
)
from fcnlib.config import pick_device, seed_everything
from fcnlib.distributed import (
    ShardSampler,
    barrier,
    broadcast_buffers,
    is_distributed,
    is_main_process,
    reduce_epoch_stats,
    world_size,
    wrap_ddp,
)
from fcnlib.loss import balanced_class_weights, segmentation_loss
from fcnlib.metrics import ConfusionMatrix, Scores
from fcnlib.modes import eval_mode
from fcnlib.precision import (
    amp_setting,
    autocast_context,
    make_grad_scaler,
    precision_dtype,
    precision_name,
    resolve_amp,
)
from fcnlib.progress import progress_bar, tqdm
from fcnlib.recipes import (
    FAST_IMAGENET,
    PAPER_LR,
    RECIPES,
    STAGE_LR_FACTOR,
    TrainConfig,
    recipe,
    stage_recipe,
)
from fcnlib.record import (
    check_new_record,
    check_record_path,
    hold_record,
    prepare_record,
    record_names,
)

__all__ = [
    "DIVERGENCE",
    "FAST_IMAGENET",
    "PAPER_LR",
    "RECIPES",
    "RESUMABLE",
    "STAGE_LR_FACTOR",
    "DivergenceError",
    "History",
    "TrainConfig",
    "autocast_context",
    "balanced_class_weights",
    "batch_to",
    "collate",
    "evaluate",
    "fit",
    "load_checkpoint",
    "make_grad_scaler",
    "make_loader",
    "make_optimizer",
    "make_scheduler",
    "param_groups",
    "prepare_model",
    "recipe",
    "resolve_amp",
    "resume_conflicts",
    "save_checkpoint",
    "segmentation_loss",
    "stage_recipe",
    "train_one_epoch",
]


# ----------------------------------------------------------------------------- optimisation


def param_groups(
    model: nn.Module, *, lr: float, weight_decay: float, bias_lr_mult: float = 2.0
) -> list[dict[str, Any]]:
    """Split trainable parameters into optimizer groups the way the Caffe FCNs do.

    ``weights`` (lr, decay), ``biases`` (``lr * bias_lr_mult``, no decay) and ``other`` 1-d
    parameters such as normalisation scales (lr, no decay; the paper's nets have none).
    Frozen parameters (``requires_grad=False``, e.g. fixed bilinear upsampling) are left out.

    >>> groups = param_groups(nn.Conv2d(3, 2, 1), lr=1e-4, weight_decay=5e-4)
    >>> [(g["name"], g["lr"], g["weight_decay"]) for g in groups]
    [('weights', 0.0001, 0.0005), ('biases', 0.0002, 0.0)]
    """
    groups = {
        "weights": {"params": [], "lr": lr, "weight_decay": weight_decay},
        "biases": {"params": [], "lr": lr * bias_lr_mult, "weight_decay": 0.0},
        "other": {"params": [], "lr": lr, "weight_decay": 0.0},
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = "biases" if name.endswith("bias") else "weights" if p.ndim > 1 else "other"
        groups[kind]["params"].append(p)
    return [{"name": k, **g} for k, g in groups.items() if g["params"]]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over :func:`param_groups` of ``model``."""
    groups = param_groups(
        model, lr=config.lr, weight_decay=config.weight_decay, bias_lr_mult=config.bias_lr_mult
    )
    if not groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    total_steps: int,
    *,
    start_step: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step lr schedule; every group keeps its ratio to the base lr (biases stay at 2x).

    "fixed" is the paper's; "poly" is ``(1 - t/T)^0.9``; "cosine" decays to 0; "onecycle" rises
    to ``lr`` then anneals. Call ``scheduler.step()`` after each ``optimizer.step()``.
    Each group's current ``lr`` is taken as its base rate. ``start_step`` (a resumed run) puts
    the schedule at that step of ``total_steps`` and sets every group's lr to its value there,
    exactly as an uninterrupted run would have it; a resumed run with more steps than it began
    with thereby gets the schedule of the longer run from that step on.

    >>> opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    >>> sched = make_scheduler(opt, recipe("paper", schedule="poly"), 10, start_step=5)
    >>> round(opt.param_groups[0]["lr"], 4)  # (1 - 5/10) ** 0.9
    0.5359
    """
    for group in optimizer.param_groups:
        group.pop("initial_lr", None)  # left by an earlier scheduler or a loaded state
    if start_step > 0:
        # a scheduler built at step 0 records each group's base rate (and OneCycleLR its peak
        # and floor) in the groups; a second one then starts from those at start_step
        make_scheduler(optimizer, config, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
    total, warm = max(1, int(total_steps)), config.warmup_steps
    last = start_step - 1  # the scheduler's own convention: the step it last computed
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=total,
            pct_start=min(warm / total, 0.99) if warm > 0 else 0.3,
            cycle_momentum=False,  # keep config.momentum: the paper's SGD fixes it
            last_epoch=last,
        )

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        if config.schedule == "poly":
            return (1 - t) ** 0.9
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=last)


# ----------------------------------------------------------------------------- device


def prepare_model(
    model: nn.Module, *, config: TrainConfig, device: torch.device, ddp: bool = False
) -> nn.Module:
    """Move ``model`` to ``device`` (channels_last if asked); return it, compiled if asked.

    ``torch.compile`` is optional: the first steps are slow while it compiles (minutes on a CPU),
    later ones faster. With ``ddp`` the model is wrapped in DistributedDataParallel (before
    compiling, as PyTorch recommends). Checkpoints always store the original model's weights.

    On CUDA it also sets ``torch.backends.cudnn.benchmark``, a process-wide flag, to
    ``config.cudnn_benchmark``: the caller puts it back when done, as :func:`fit` does.
    """
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if ddp:
        model = wrap_ddp(model, device)
    return torch.compile(model) if config.compile else model


def _check_on_device(model: nn.Module, device: torch.device) -> None:
    """Raise, naming both devices, when ``model``'s weights are not on ``device``.

    Without this check the mismatch surfaces deep inside the first layer as "Input type
    (torch.cuda.FloatTensor) and weight type (torch.FloatTensor) should be the same".
    """
    found = {p.device for p in model.parameters()} | {b.device for b in model.buffers()}
    wrong = sorted(str(d) for d in found if d.type != device.type or (
        device.index is not None and d.index != device.index
    ))  # fmt: skip
    if wrong:
        raise ValueError(
            f"the model's weights are on {', '.join(wrong)} but the data goes to {device}: "
            f"move the model first (model.to(device)), or pass device= the model's device"
        )


# ----------------------------------------------------------------------------- epochs


class DivergenceError(FloatingPointError):
    """The loss exploded while still finite (see :func:`train_one_epoch`'s ``divergence``)."""


# A step's loss above this many times the run's first loss (or a uniform guess's) is divergence.
DIVERGENCE = 100.0


def _output_stride(model: nn.Module) -> int:
    """The net's output stride (its final-layer cell, in pixels); 1 when it does not say."""
    net = getattr(model, "module", model)  # DistributedDataParallel wraps the net
    stride = getattr(net, "stride", 1)
    return stride if isinstance(stride, int) and stride >= 1 else 1


def _uniform_loss(
    logits: torch.Tensor, labels: torch.Tensor, config: TrainConfig, weights: Any
) -> float:
    """The loss of predicting every class equally (log C per pixel), an upper bound when summed."""
    per_pixel = math.log(max(logits.shape[1], 2))
    if weights is not None and not isinstance(weights, str):
        per_pixel *= float(torch.as_tensor(weights).max())
    return per_pixel * (labels.numel() if config.loss_reduction == "sum" else 1)


def batch_to(
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device | str,
    *,
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader's batch on ``device``, as the net and the loss take it.

    uint8 images (0-255, what a ``compact`` dataset hands over: a quarter of float32's bytes
    through the DataLoader and the host-to-device copy) become float32 in [0, 1] on the
    device, with torchvision's arithmetic (``to(float32) * (1 / 255)``), so a compact batch
    trains bit for bit as its float version; integer labels of any width become int64 there.
    ``channels_last`` sets the layout in the same conversion.

    >>> x, y = batch_to(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8),
    ...                 torch.zeros(1, 2, 2, dtype=torch.uint8), "cpu")
    >>> x.dtype, x.max().item(), y.dtype
    (torch.float32, 1.0, torch.int64)
    """
    layout = torch.channels_last if channels_last else torch.preserve_format
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        images = images.to(torch.float32, memory_format=layout).mul_(1.0 / 255)
    elif channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = labels.to(device, non_blocking=True)
    if not labels.is_floating_point() and labels.dtype != torch.int64:
        labels = labels.long()
    return images, labels


def _check_finite(value: float, where: str, config: TrainConfig) -> None:
    """FloatingPointError for a nan/inf loss, raised before the weights are touched."""
    if not math.isfinite(value):
        raise FloatingPointError(
            f"loss is {value} at {where}, amp {config.amp!r}); stopped before updating the "
            f"weights. Try a lower learning rate, amp='off' (fp16 overflows), grad_clip, or "
            f"check the inputs for nan/inf with torch.isfinite(images).all()."
        )


def _check_bounded(value: float, limit: float, divergence: float, where: str) -> None:
    """DivergenceError for a loss above ``limit``, raised before the weights are touched."""
    if value > limit:
        raise DivergenceError(
            f"training diverged: loss {value:.3g} at {where}) is more than {divergence:g}x "
            f"the loss the run started from or a uniform guess's (bound {limit:.3g}); stopped "
            "before updating the weights. Lower the learning rate (or set grad_clip), or pass "
            "divergence=None if such a loss is expected."
        )


def _update(
    model: nn.Module,
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float | None,
) -> None:
    """One optimizer step: backward through the (possibly disabled) scaler, clip, step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)  # skips the step if fp16 gradients overflowed
    scaler.update()


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    config: TrainConfig,
    device: torch.device | str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    class_weights: torch.Tensor | None = None,
    epoch: int = 0,
    progress: bool | tqdm = True,
    divergence: float | None = DIVERGENCE,
    start_loss: float | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` of ``(images (N, 3, H, W), labels (N, H, W))`` batches.

    Returns ``{"loss", "steps", "seconds", "images_per_s", "lr", "first_loss"}`` (mean step
    loss, last lr of the first group, the first step's loss). ``class_weights`` overrides
    ``config.class_weights`` (needed for "balanced"; see :func:`fit`). ``progress`` is True for a
    bar over this epoch's batches, or a bar to advance by one per batch (:func:`fit` keeps one
    for the whole run).

    Raises FloatingPointError before any weight is touched when a step's loss is nan/inf, and
    :class:`DivergenceError` when it exceeds ``divergence`` times the larger of the run's
    starting loss (``start_loss``; by default this epoch's first) and the loss of a uniform
    guess (``log C`` per labelled pixel; with a summed loss, per pixel of the batch): a run
    whose loss explodes stops while it is still finite, not only once it is nan. ``None``
    turns the check off.
    """
    device = torch.device(device)
    _check_on_device(model, device)
    if class_weights is None and config.class_weights == "balanced":
        raise ValueError(
            "class_weights='balanced' needs the label histogram: pass class_weights="
            "balanced_class_weights(counts), or use fit(), which counts the training labels"
        )
    weights = config.class_weights if class_weights is None else class_weights
    dtype = resolve_amp(device, config.amp)  # once, not per batch
    # a disabled scaler is a no-op wrapper around backward/step: one code path for all dtypes
    if scaler is None:
        scaler = torch.amp.GradScaler(device.type, enabled=False)
    model.train()
    total, steps, images_seen, start = 0.0, 0, 0, time.perf_counter()
    limit, first = None, None  # the divergence bound, set by the first step
    own_bar = isinstance(progress, bool)
    if own_bar:
        batches = len(loader) if hasattr(loader, "__len__") else None
        bar = progress_bar(total=batches, desc=f"epoch {epoch}", unit="batch",
                           disable=not progress, leave=False)  # fmt: skip
    else:
        bar = progress
    for images, labels in loader:
        images, labels = batch_to(images, labels, device, channels_last=config.channels_last)
        with autocast_context(device, dtype):
            logits = model(images)  # (N, C, H, W)
        loss = segmentation_loss(
            logits,
            labels,
            ignore_index=config.ignore_index,
            reduction=config.loss_reduction,
            sample_fraction=config.loss_sampling,
            sample_cell=_output_stride(model),  # the paper drops whole final-layer cells
            class_weights=weights,
        )
        value = loss.item()  # one sync per step; it buys the nan check below
        where = f"epoch {epoch}, step {steps} (lr {optimizer.param_groups[0]['lr']:.3g}"
        _check_finite(value, where, config)
        first = value if first is None else first
        if divergence is not None:
            if limit is None:
                reference = value if start_loss is None else start_loss
                limit = divergence * max(reference, _uniform_loss(logits, labels, config, weights))
            _check_bounded(value, limit, divergence, where)
        _update(model, loss, optimizer, scaler, config.grad_clip)
        if scheduler is not None:
            scheduler.step()
        total, steps, images_seen = total + value, steps + 1, images_seen + len(images)
        rate = images_seen / max(time.perf_counter() - start, 1e-9)
        if own_bar:
            bar.set_postfix(loss=f"{value:.4g}", images_per_s=f"{rate:.3g}", refresh=False)
        bar.update()
    if own_bar:
        bar.close()
    seconds = time.perf_counter() - start
    return {
        "loss": total / max(steps, 1),
        "steps": steps,
        "seconds": seconds,
        "images_per_s": images_seen / max(seconds, 1e-9),
        "lr": optimizer.param_groups[0]["lr"],
        "first_loss": math.nan if first is None else first,
    }


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    n_classes: int,
    device: torch.device | str | None = None,
    amp: str | torch.dtype | None = "off",
    channels_last: bool = False,
    ignore_index: int = 255,
    progress: bool = False,
    all_reduce: bool = False,
) -> Scores:
    """The paper's metrics over ``loader``, from one confusion matrix kept on ``device``.

    ``device`` defaults to the model's. The model runs in eval mode under inference_mode; each
    submodule's train/eval flag is restored afterwards. ``amp`` is an ``amp`` setting or a
    dtype already resolved (None: float32). With ``all_reduce`` every process of a
    torch.distributed group scores its own shard of the data (one that does not repeat images,
    e.g. :class:`fcnlib.distributed.ShardSampler`) and the confusion matrices are summed.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    _check_on_device(model, device)
    matrix = ConfusionMatrix(n_classes, ignore_index=ignore_index)
    dtype = resolve_amp(device, amp) if isinstance(amp, str) else amp  # once, not per batch
    with eval_mode(model), torch.inference_mode():
        batches = progress_bar(loader, desc="eval", disable=not progress, leave=False)
        for images, labels in batches:
            images, labels = batch_to(images, labels, device, channels_last=channels_last)
            with autocast_context(device, dtype):
                logits = model(images)  # (N, C, H, W)
            matrix.update(logits.argmax(1), labels)
    if all_reduce:
        matrix.matrix = matrix.matrix.to(device)  # NCCL needs it on the GPU, even if no batch ran
        matrix.all_reduce_()
    return matrix.compute()


# ----------------------------------------------------------------------------- history and fit


class History(list):
    """One dict per epoch: epoch, step, loss, lr, seconds, and the metrics when evaluated."""

    def as_columns(self) -> dict[str, list]:
        """``{"epoch": [...], "loss": [...], "mean_iu": [...]}`` for plotting; nan where missing."""
        keys = list(dict.fromkeys(k for record in self for k in record))
        return {k: [record.get(k, math.nan) for record in self] for k in keys}

    def best(self, metric: str = "mean_iu") -> dict[str, Any]:
        """The epoch's record with the best ``metric`` (lowest for losses, highest otherwise)."""
        scored = [r for r in self if metric in r and r[metric] == r[metric]]  # skip nan
        if not scored:
            raise ValueError(f"no epoch has {metric!r}; recorded: {sorted(self.as_columns())}")
        pick = min if "loss" in metric else max
        return pick(scored, key=lambda r: r[metric])


def _as_dataset(data: Any, name: str) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, tuple | list) and all(isinstance(t, torch.Tensor) for t in data):
        shapes = [tuple(t.shape) for t in data]
        if [len(s) for s in shapes] == [4, 3] and shapes[0][0] == shapes[1][0]:
            return TensorDataset(*data)
        raise ValueError(
            f"{name} must be (images (N, 3, H, W), labels (N, H, W)) with the same N, got "
            f"tensors of shapes {shapes}"
        )
    raise TypeError(
        f"{name} must be a Dataset or a pair (images (N, 3, H, W) float, labels (N, H, W) int64), "
        f"got {type(data).__name__}; ShapesDataset(...).materialize() gives such a pair"
    )


def collate(batch: list) -> Any:
    """torch's ``default_collate``, with a message that says what to do when the images of a
    batch differ in size (whole VOC images do)."""
    try:
        return default_collate(batch)
    except RuntimeError as e:
        if "stack expects each tensor to be equal size" not in str(e):
            raise
        sizes = sorted({tuple(item[0].shape[-2:]) for item in batch})
        raise ValueError(
            f"images of different sizes cannot share a batch (found {sizes[:4]}): crop them to "
            "one size for training (fcnlib.data.transforms.train_transform(crop=...)), and "
            "evaluate whole images one at a time (TrainConfig(eval_batch_size=1), or "
            "stage_recipe(..., whole_images=True))"
        ) from e


def make_loader(
    ds: Dataset,
    config: TrainConfig,
    device: torch.device,
    *,
    seed: int,
    shuffle: bool,
    sampler: Sampler | None = None,
    batch_size: int | None = None,
) -> DataLoader:
    """The DataLoader :func:`fit` reads ``ds`` with: ``config.batch_size`` (or ``batch_size``)
    items per batch, ``config.num_workers`` workers, :func:`collate`, pinned memory for CUDA.

    A fresh generator per call: the order depends on ``seed`` only (fit passes seed * 1000 +
    epoch), so a resumed run draws the same batches, and loading never consumes torch's global
    random stream. A ``sampler`` (distributed training) picks and orders the items itself.
    """
    return DataLoader(
        ds,
        batch_size=batch_size or config.batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
        num_workers=config.num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )


def _label_counts(ds: Dataset, config: TrainConfig, n_classes: int) -> torch.Tensor:
    counts = torch.zeros(n_classes, dtype=torch.int64)
    for _, labels in make_loader(ds, config, torch.device("cpu"), seed=0, shuffle=False):
        labels = labels[(labels != config.ignore_index) & (labels >= 0) & (labels < n_classes)]
        counts += torch.bincount(labels.reshape(-1).long(), minlength=n_classes)
    return counts


# Fields a resumed run can take from the caller: they change nothing already done. A longer
# run (epochs) rebuilds its schedule; a new lr scales every group's rate from the resumed step.
RESUMABLE = frozenset(
    {"epochs", "lr", "num_workers", "eval_batch_size", "channels_last", "compile",
     "cudnn_benchmark"}
)  # fmt: skip


def resume_conflicts(
    saved: TrainConfig | dict[str, Any],
    config: TrainConfig,
    *,
    saved_precision: str | None = None,
    precision: str | None = None,
) -> dict:
    """The settings a run saved with ``saved`` cannot continue under: ``{field: (saved, new)}``.

    A resumed run applies the fields in :data:`RESUMABLE` for real; any other change (batch
    size, optimizer, momentum, ...) would make the run something else, and so does ``epochs``
    below the epochs already done (reported by the caller, who knows them).

    Precision: given the one the run recorded (``saved_precision``, see
    :func:`fcnlib.precision.precision_name`) and the one ``config.amp`` means on this machine
    (``precision``), the ``amp`` setting may change, and a different precision is the conflict
    ``"precision"``. Without them (a checkpoint that recorded none) ``amp`` must stay as it was.
    """
    if isinstance(saved, dict):
        saved = TrainConfig.from_dict(saved)  # fills fields that an older checkpoint lacks
    old, new = saved.to_dict(), config.to_dict()
    conflicts = {k: (old[k], new[k]) for k in new if old[k] != new[k] and k not in RESUMABLE}
    if saved_precision is not None and precision is not None:
        conflicts.pop("amp", None)  # the setting may change; what it means here may not
        if saved_precision != precision:
            conflicts["precision"] = (saved_precision, precision)
    return conflicts


def _resume_state(
    path: Path, resume: bool, config: TrainConfig, extra: dict | None, precision: str
) -> dict | None:
    """The checkpoint to continue, or None for a new run; refuses what cannot be honoured.

    ``precision`` is what ``config.amp`` means here. A run keeps the precision it was started
    in: its ``amp`` setting may change only to one that means the same precision here (a run
    started with "auto" on a GPU with bf16 continues on a T4 with amp="bf16"), and "auto" that
    means something else here is refused. (A checkpoint that records no precision keeps its
    ``amp`` setting instead.) A new run is refused where files of another run's record are."""
    if not path.exists():
        check_new_record(path)  # a new run never replaces another run's files
        return None
    state = load_checkpoint(path)  # a file that is not a checkpoint is an error, never replaced
    done, planned = state["epoch"], state["config"].get("epochs")
    if not resume:
        raise FileExistsError(
            f"{path} already holds a run ({done} of {planned} epochs done): pass resume=True to "
            "continue it (a larger config.epochs extends it), or give another checkpoint path "
            f"to start a new run (or delete the run's whole record, {record_names(path)}, to "
            "start over there)"
        )
    _check_resumable(path, state)
    saved_precision = state.get("precision")
    conflicts = resume_conflicts(
        state["config"], config, saved_precision=saved_precision, precision=precision
    )
    if "precision" in conflicts:
        raise ValueError(
            f"cannot resume {path}: it was trained in {saved_precision}, and amp="
            f"{config.amp!r} means {precision} here. Pass amp="
            f"{amp_setting(saved_precision)!r} to continue in {saved_precision}, or "
            "start a new run with another checkpoint path"
        )
    if config.epochs < done:
        conflicts["epochs"] = (done, config.epochs)
    if conflicts:
        changes = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(conflicts.items()))
        raise ValueError(
            f"cannot resume {path} with changed settings: {changes}. A resumed run can change "
            f"only {sorted(RESUMABLE)} (epochs to at least the {done} done); start a new run "
            "with another checkpoint path instead"
        )
    if extra is not None and dict(extra) != state["extra"]:
        keys = sorted(k for k in {*extra, *state["extra"]} if extra.get(k) != state["extra"].get(k))
        saved = {k: state["extra"].get(k) for k in keys}
        given = {k: extra.get(k) for k in keys}
        raise ValueError(
            f"cannot resume {path}: it was started with other extra values (saved {saved}, "
            f"given {given}); start a new run with another checkpoint path instead"
        )
    return state


def _processes(n: int) -> str:
    return "one plain process (no torchrun)" if n == 1 else f"{n} processes (torchrun)"


def _check_resumable(path: Path, state: dict) -> None:
    """Refuse a checkpoint a run cannot continue: weights only (a best-weights file), or one
    trained by another number of processes (an epoch's steps depend on it)."""
    if state.get("optimizer") is None:
        name = path.name.removesuffix(f".best{path.suffix}")
        what, advice = "weights only, no optimizer state", "the run's checkpoint"
        if name != path.name:
            what, advice = "a best-weights file", str(path.with_name(name + path.suffix))
        raise ValueError(
            f"cannot resume {path}: it is {what}, and resuming would start the optimizer "
            f"afresh. Resume from {advice}, or start a new run from these weights "
            "(load_checkpoint(path, model=model), then fit with another checkpoint path)"
        )
    saved, now = state.get("world_size"), world_size()
    if saved is not None and saved != now:
        launch = "one plain process" if saved == 1 else f"torchrun --nproc_per_node={saved}"
        raise ValueError(
            f"cannot resume {path}: it was trained by {_processes(saved)} and this run is "
            f"{_processes(now)}; an epoch's steps, and so the schedule, depend on that number. "
            f"Resume it with {launch}, or start a new run with another checkpoint path"
        )


def _check_steps(path: Path | None, state: dict | None, steps_per_epoch: int) -> None:
    """Refuse to resume a checkpoint of an older fcnlib, which records no number of processes,
    whose epochs took another number of steps than this run's would."""
    if state is None or state.get("world_size") is not None or not state["history"]:
        return
    saved = state["history"][-1].get("steps")
    if saved is not None and saved != steps_per_epoch:
        raise ValueError(
            f"cannot resume {path}: its epochs took {saved} steps and this run's would take "
            f"{steps_per_epoch}, so its schedule would not continue: it was trained by another "
            "number of processes (torchrun --nproc_per_node) or on another training set. "
            "Resume it as it was started, or start a new run with another checkpoint path"
        )


def _weights_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def fit(
    model: nn.Module,
    train_data: Dataset | tuple[torch.Tensor, torch.Tensor],
    val_data: Dataset | tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    config: TrainConfig,
    n_classes: int,
    device: torch.device | str | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    eval_every: int = 1,
    progress: bool | str = True,
    extra: dict[str, Any] | None = None,
    divergence: float | None = DIVERGENCE,
    tensorboard: bool = True,
) -> History:
    """Train ``model`` for ``config.epochs`` epochs; return the :class:`History`.

    Data is a Dataset or a pair ``(images float (N, 3, H, W), labels int64 (N, H, W))``, void
    255. A fresh run seeds torch, Python and NumPy with ``config.seed``.

    With ``checkpoint`` the run keeps a record beside that path (see :mod:`fcnlib.record`):
    after every epoch the checkpoint itself (model, optimizer, scheduler, random state,
    history, number of processes; written atomically), the weights of the best mean IU so far
    (``NAME.best.pt``), every epoch's numbers as JSON lines (``NAME.metrics.jsonl``) and, when
    TensorBoard is installed and ``tensorboard``, its event files (``NAME.tb/``). Before any
    work it checks that the record's names fit the file system and that its folder can be
    written; while it runs it holds the record's lock (``NAME.lock``), and another run on the
    same record is refused (:class:`fcnlib.record.RecordInUseError`). A path that already
    holds a run is refused unless ``resume=True``, and a new run where any file of the record
    exists (another run's) is refused too. A resumed run first brings the record back in line
    with its checkpoint (a run killed mid-save leaves the best weights or the metrics an
    epoch behind); then training continues after the saved epoch (a finished run returns at
    once) and ends bit-identical to an uninterrupted run. A resumed run may change the fields
    in :data:`RESUMABLE`, and they are applied: a larger ``epochs`` extends the run with the
    longer run's schedule from the saved step on, a new ``lr`` scales every group's rate from
    there. Any other change is refused (:func:`resume_conflicts`), as is a changed ``extra``
    (plain values, e.g. the model's build arguments, stored in every checkpoint), another
    number of processes than the run was trained by, and a file of weights only
    (``NAME.best.pt``). A failed save (a full disk) raises OSError; the files keep the
    previous epoch.

    ``progress`` (True, or the bar's label) shows one bar for the whole run that moves per
    batch, with the epoch and the last validation mean IU (in %; the last epoch's mean loss
    where there is no validation); False shows none.

    A loss that explodes (:class:`DivergenceError`, see ``divergence`` in
    :func:`train_one_epoch`), turns nan, or weights that stop being finite stop the run before
    the checkpoint of the last good epoch is overwritten.

    Inside a torch.distributed group of several processes (``torchrun``, after
    :func:`fcnlib.distributed.init_distributed`) every process calls ``fit`` the same way: the
    model trains under DistributedDataParallel on this process's share of each epoch,
    ``config.batch_size`` images per process and step, and validation is split across the
    processes and summed. Only rank 0 shows progress and writes the record; every rank
    returns the same history. See :mod:`fcnlib.distributed`.

    >>> data = (torch.rand(4, 3, 8, 8), torch.randint(0, 2, (4, 8, 8)))
    >>> config = recipe("fast", epochs=2)
    >>> history = fit(nn.Conv2d(3, 2, 1), data, data, config=config, n_classes=2, progress=False)
    >>> history.as_columns()["epoch"]
    [1, 2]
    """
    if eval_every < 1:
        raise ValueError(f"eval_every counts epochs and must be >= 1, got {eval_every}")
    if config.epochs < 1:  # TrainConfig allows 0; training for none would return no history
        raise ValueError(
            f"config.epochs must be >= 1 to train, got {config.epochs}; to score a model "
            "without training it, call evaluate(model, loader, n_classes=...)"
        )
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None:
        check_record_path(path)  # names that fit, a folder that can be written
    # rank 0 alone writes the record, and holds its lock until the run returns or raises
    owner = path is not None and is_main_process()
    with hold_record(path) if owner else contextlib.nullcontext():
        return _run(model, train_data, val_data, config=config, n_classes=n_classes,
                    device=device, path=path, resume=resume, eval_every=eval_every,
                    progress=progress, extra=extra, divergence=divergence,
                    tensorboard=tensorboard)  # fmt: skip


def _run(
    model: nn.Module,
    train_data: Dataset | tuple[torch.Tensor, torch.Tensor],
    val_data: Dataset | tuple[torch.Tensor, torch.Tensor] | None,
    *,
    config: TrainConfig,
    n_classes: int,
    device: torch.device | str | None,
    path: Path | None,
    resume: bool,
    eval_every: int,
    progress: bool | str,
    extra: dict[str, Any] | None,
    divergence: float | None,
    tensorboard: bool,
) -> History:
    """:func:`fit`'s run, once its arguments are checked and its record is locked."""
    device = pick_device(device)
    # the run's precision, decided once here and recorded in every checkpoint
    precision = precision_name(resolve_amp(device, config.amp))
    state = None if path is None else _resume_state(path, resume, config, extra, precision)
    train_set = _as_dataset(train_data, "train_data")
    val_set = None if val_data is None else _as_dataset(val_data, "val_data")
    distributed = is_distributed()
    main = is_main_process()
    label = progress if isinstance(progress, str) else "training"
    progress = progress is not False and main
    # each rank's share of an epoch, padded by DistributedSampler to the same length everywhere
    sampler = DistributedSampler(train_set, seed=config.seed * 1000) if distributed else None
    share = len(train_set) if sampler is None else len(sampler)
    steps_per_epoch = math.ceil(share / config.batch_size)
    _check_steps(path, state, steps_per_epoch)
    cudnn_benchmark = torch.backends.cudnn.benchmark  # given back when the run ends
    runner = prepare_model(model, config=config, device=device, ddp=distributed)
    optimizer = make_optimizer(model, config)
    scaler = make_grad_scaler(device, precision_dtype(precision))
    weights = None
    if config.class_weights == "balanced":
        weights = balanced_class_weights(_label_counts(train_set, config, n_classes))
    history, start, step = _start_run(state, config, model, optimizer, scaler)
    # built after restoring: a longer (or shorter) run's schedule, at the step reached
    scheduler = make_scheduler(
        optimizer, config, config.epochs * steps_per_epoch, start_step=step if start else 0
    )
    objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    record_run = path is not None and main
    if record_run:
        prepare_record(path, state)  # stale temporaries removed; a resumed record repaired
    board = _Board(path, start) if record_run and tensorboard else None
    best = max((r["mean_iu"] for r in history if r.get("mean_iu") == r.get("mean_iu")),
               default=-math.inf)  # fmt: skip
    bar = progress_bar(total=(config.epochs - start) * steps_per_epoch, desc=label, unit="batch",
                       disable=not progress)  # fmt: skip
    shown: dict[str, str] = {}  # the bar's epoch and last validation mean IU (%) or loss
    try:
        for epoch in range(start, config.epochs):
            shown["epoch"] = f"{epoch + 1}/{config.epochs}"
            bar.set_postfix(shown, refresh=False)
            if sampler is not None:
                sampler.set_epoch(epoch)  # shuffles with seed * 1000 + epoch, like the generator
            loader = make_loader(train_set, config, device, seed=config.seed * 1000 + epoch,
                                 shuffle=True, sampler=sampler)  # fmt: skip
            kept = f" {path} keeps epoch {epoch}." if path is not None and epoch else ""
            try:
                stats = train_one_epoch(
                    runner, loader, optimizer, config=config, device=device,
                    scheduler=scheduler, scaler=scaler, class_weights=weights, epoch=epoch + 1,
                    progress=bar, divergence=divergence,
                    start_loss=history[0].get("first_loss") if history else None,
                )  # fmt: skip
            except FloatingPointError as e:
                raise type(e)(f"{e}{kept}") from e
            _check_weights(model, optimizer, epoch + 1, kept)
            stats = reduce_epoch_stats(stats)  # mean loss over the ranks (as is, in one process)
            step += stats["steps"]
            record = {"epoch": epoch + 1, "step": step, **stats}
            last = epoch + 1 == config.epochs
            if val_set is not None and ((epoch + 1) % eval_every == 0 or last):
                scores = _validate(model, runner, val_set, config, device, precision, n_classes)
                record.update(scores.as_dict(), iu=scores.iu.tolist())
            history.append(record)
            _show(bar, shown, record)
            if record_run:
                save = dict(epoch=epoch + 1, step=step, config=config, history=history,
                            extra=extra, precision=precision, world_size=world_size())  # fmt: skip
                best = _record_epoch(path, objects, save, best, board)
            if path is not None:
                barrier()  # the other ranks wait until the files are complete
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        bar.close()
        if board is not None:
            board.close()
    return history


def _start_run(
    state: dict | None,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> tuple[History, int, int]:
    """``(history, epoch, step)`` to start from: a fresh run seeded, or the saved one restored."""
    if state is None:
        seed_everything(config.seed)
        return History(), 0, 0
    configured = [g["lr"] for g in optimizer.param_groups]  # this call's config.lr
    restore(state, model=model, optimizer=optimizer, scaler=scaler)
    for group, lr in zip(optimizer.param_groups, configured, strict=True):
        group["lr"] = lr  # the base rate; the scheduler puts it at the resumed step
    set_rng_state(state["rng"])
    return History(state["history"]), state["epoch"], state["step"]


def _check_weights(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, kept: str):
    """FloatingPointError if a weight stopped being finite (``kept``: what the record keeps)."""
    if not _weights_finite(model):
        raise FloatingPointError(
            f"the weights are no longer finite after epoch {epoch} (lr "
            f"{optimizer.param_groups[0]['lr']:.3g}): lower the learning rate, set "
            f"grad_clip, or use amp='off'.{kept}"
        )


def _validate(
    model: nn.Module,
    runner: nn.Module,
    val_set: Dataset,
    config: TrainConfig,
    device: torch.device,
    precision: str,
    n_classes: int,
) -> Scores:
    """The epoch's validation scores, in the run's precision, split across the processes."""
    distributed = is_distributed()
    shard = ShardSampler(val_set) if distributed else None  # no padding: count once
    val_loader = make_loader(val_set, config, device, seed=0, shuffle=False, sampler=shard,
                             batch_size=config.eval_batch_size)  # fmt: skip
    if distributed:
        # Every rank scores rank 0's weights and BatchNorm statistics (those that the
        # checkpoint keeps) with the plain module: DDP's forward syncs buffers across ranks,
        # which would hang when the shards have different numbers of batches.
        broadcast_buffers(model)
    return evaluate(
        model if distributed else runner,
        val_loader,
        n_classes=n_classes,
        device=device,
        amp=precision_dtype(precision),
        channels_last=config.channels_last,
        ignore_index=config.ignore_index,
        all_reduce=distributed,
    )


def _show(bar: tqdm, shown: dict[str, str], record: dict) -> None:
    """The run's bar shows the epoch and the last validation mean IU (%), else the loss."""
    if "mean_iu" in record:
        shown.pop("loss", None)
        shown["mIU"] = f"{100 * record['mean_iu']:.1f}"
    elif "mIU" not in shown:
        shown["loss"] = f"{record['loss']:.3g}"
    bar.set_postfix(shown)


def _record_epoch(
    path: Path, objects: dict, save: dict, best: float, board: _Board | None
) -> float:
    """Write the epoch's record: checkpoint, best weights if best, metrics, TensorBoard.
    Returns the best mean IU so far."""
    record = save["history"][-1]
    save_checkpoint(path, **objects, **save)
    if record.get("mean_iu", -math.inf) > best:  # nan compares False: not best
        best = record["mean_iu"]
        save_checkpoint(run_files(path)["best"], model=objects["model"], **save)
    write_metrics(run_files(path)["metrics"], save["history"])
    if board is not None:
        board.log(record)
    return best


class _Board:
    """TensorBoard's writer for a run's record, opened when the first epoch is logged, after
    its checkpoint: a run stopped before its first checkpoint leaves no ``NAME.tb/``, which
    the next run would have to take for another run's."""

    def __init__(self, path: Path, start: int) -> None:
        self.path, self.start, self.writer, self.opened = path, start, None, False

    def log(self, record: dict[str, Any]) -> None:
        if not self.opened:
            self.writer, self.opened = _tensorboard_writer(self.path, self.start), True
        if self.writer is not None:  # None: TensorBoard is not installed
            _log_epoch(self.writer, record)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard_writer(path: Path, start: int) -> Any:
    """A SummaryWriter in ``NAME.tb/`` when TensorBoard is installed, else None. Events of
    epochs after ``start`` (left by a run that stopped before its next checkpoint) are purged."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional: the JSON lines record is always written
        return None
    return SummaryWriter(str(run_files(path)["tensorboard"]), purge_step=start + 1)


def _log_epoch(board: Any, record: dict[str, Any]) -> None:
    for key, value in record.items():
        if key in ("epoch", "step", "iu") or not isinstance(value, int | float):
            continue
        group = "train" if key in ("loss", "lr", "seconds", "images_per_s", "steps") else "val"
        board.add_scalar(f"{group}/{key}", value, record["epoch"])
    board.flush()

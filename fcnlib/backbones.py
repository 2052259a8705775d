"""Backbones: the classifiers that FCNs are made from.

The paper starts from ImageNet classifiers (AlexNet, VGG16, GoogLeNet) and turns them into dense
predictors. fcnlib offers the same three from torchvision (ImageNet weights when asked for,
random weights offline) and, for the lab bench, small VGG-style classifiers that fcnlib
pre-trains itself on :class:`~fcnlib.data.ShapesClassification` crops, our stand-in for ImageNet.

The weights of ``"tiny_vgg"``'s default recipe ship inside the package
(``fcnlib/weights/tiny_vgg-<recipe key>.pt``, with their SHA-256 checksum), so that every
machine, whatever its CPU model or GPU, Colab included, gets the same backbone bit for bit and
no runtime waits a minute for pre-training. Training cannot promise that by itself: on CUDA it is
not bit-reproducible (cuDNN's backward kernels accumulate in an order that varies from run to
run), and on CPUs the result depends on the thread count and can differ between CPU models (each
picks its own float kernels). The recipe that made the shipped weights stays here and always
trains on the CPU, with a fixed thread count, so runs on one machine are bit-identical:
``pretrained_classifier("tiny_vgg", retrain=True)`` re-creates the weights (about a minute on
2 cores; cached under ``$FCN_CACHE/backbones``), and :func:`_write_shipped_weights` regenerates
the shipped file after a change to the recipe or the architecture. Other recipes and
``"tiny_vgg_wide"`` are trained the same way on first use and cached on disk.

Every backbone is described by a :class:`BackboneSpec`: how to build the classifier, the input
size it classifies natively, how to normalise its input, and where its pooling stages end (the
layers FCN's skips tap: stride 8 = ``pool3``, 16 = ``pool4``, 32 = ``pool5`` in VGG16).

Input normalisation is part of the weights. torchvision's ImageNet weights expect RGB in [0, 1]
normalised by mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). The Caffe VGG16 the
paper fine-tuned (``"vgg16_caffe"``, Simonyan & Zisserman's own weights) expects BGR in 0-255
minus the mean pixel (103.939, 116.779, 123.68), with no division. Feeding one net the other's
convention raises no error, it silently degrades the net: red and blue are swapped, and the
input scale is off by about 58 times per channel (255 against 1 / 0.229 ~ 4.4 per unit of
intensity). The paper's learning rates, too, were tuned for the Caffe weights and their 0-255
inputs. Every model here takes RGB in [0, 1]; its :class:`BackboneSpec` says how to convert
(``mean``, ``std``, ``bgr``), and :class:`~fcnlib.models.FCN` applies that itself.

>>> net = build_classifier("tiny_vgg")  # random weights; pretrained_classifier() for trained ones
>>> net(torch.zeros(2, 3, 96, 96)).shape
torch.Size([2, 6])
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from dataclasses import asdict, dataclass, field
from http.client import HTTPException
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fcnlib._io import atomic_torch_save
from fcnlib.config import cache_dir
from fcnlib.system import cpu_model, torch_threads

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "GoogLeNetInput",
    "TinyVGG",
    "build_classifier",
    "pretrained_classifier",
    "stage_taps",
    "trunk_layers",
]


class TinyVGG(nn.Module):
    """A VGG in miniature: 3x3 convolutions, five 2x2 max pools (stride 32), and a real fully
    connected head fc6 -> fc7 -> fc8, exactly the structure the paper convolutionalizes.

    ``(N, 3, S, S) -> (N, n_classes)`` logits for the native size ``S = 32 * fc6_size``.
    Batch normalisation after each convolution lets it train from scratch in a CPU minute.
    """

    def __init__(
        self,
        *,
        widths: tuple[int, ...] = (16, 32, 64, 96, 128),
        depths: tuple[int, ...] = (1, 1, 2, 2, 2),
        fc_width: int = 256,
        fc6_size: int = 3,
        n_classes: int = 6,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for width, depth in zip(widths, depths, strict=True):
            for _ in range(depth):
                layers += [
                    nn.Conv2d(cin, width, 3, padding=1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                cin = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)  # (N, widths[-1], S/32, S/32)
        self.classifier = nn.Sequential(
            # fc6 sees the whole (fc6_size x fc6_size) pool5 grid: a "global" layer
            nn.Linear(cin * fc6_size**2, fc_width), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True), nn.Dropout(dropout),  # fc7
            nn.Linear(fc_width, n_classes),  # fc8
        )  # fmt: skip
        self.native_size = 32 * fc6_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


@dataclass(frozen=True)
class BackboneSpec:
    """What fcnlib needs to know about a classifier to build FCNs from it.

    Attributes:
        name: registry key.
        native_size: the input side the classifier was trained on (fc6 sees exactly its grid).
        mean, std: per-channel input normalisation the weights expect (inputs in [0, 1]),
            in the weights' channel order: ``(x - mean) / std``.
        taps: stride -> index into :func:`trunk_layers` of the layer whose output FCN taps at
            that stride. Empty: computed by :func:`stage_taps` (the first layer reaching each
            stride: pool3 / pool4 / pool5 in VGG16).
        lab: True for the lab-bench backbones fcnlib pre-trains itself.
        kwargs: keyword arguments of the builder.
        bgr: True if the weights expect BGR channel order (Caffe's), False for RGB. Inputs
            are RGB; their channels are reversed before ``mean`` and ``std`` apply.
    """

    name: str
    native_size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    taps: dict[int, int] = field(default_factory=dict)
    lab: bool = False
    kwargs: dict = field(default_factory=dict)
    bgr: bool = False


_IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

# Simonyan & Zisserman's Caffe VGG16, converted to torchvision's layout by Justin Johnson
# (github.com/jcjohnson/pytorch-vgg); the name's hex part is the file's SHA-256 prefix.
_CAFFE_VGG16_FILE = "vgg16-00b39a1b.pth"
_CAFFE_VGG16_URLS = (
    f"https://web.eecs.umich.edu/~justincj/models/{_CAFFE_VGG16_FILE}",
    f"https://s3-us-west-2.amazonaws.com/jcjohns-models/{_CAFFE_VGG16_FILE}",  # mirror
)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # Caffe's mean pixel, 0-255, BGR
# For inputs in [0, 1]: (x_bgr - mean / 255) / (1 / 255) = 255 * x_bgr - mean, Caffe's exactly.
_CAFFE = {"mean": tuple(m / 255 for m in _CAFFE_MEAN_BGR), "std": (1 / 255,) * 3, "bgr": True}

BACKBONES: dict[str, BackboneSpec] = {
    # Lab bench: pre-trained by fcnlib on the shapes crops.
    "tiny_vgg": BackboneSpec("tiny_vgg", 96, lab=True),
    "tiny_vgg_wide": BackboneSpec(
        "tiny_vgg_wide", 96, lab=True, kwargs={"widths": (32, 64, 96, 128, 192), "fc_width": 384}
    ),
    # torchvision's ImageNet classifiers.
    "vgg16": BackboneSpec("vgg16", 224, **_IMAGENET),
    # The paper's VGG16: the original Caffe weights (BGR, 0-255, mean pixel subtracted).
    "vgg16_caffe": BackboneSpec("vgg16_caffe", 224, **_CAFFE),
    "alexnet": BackboneSpec("alexnet", 224, **_IMAGENET),
    # GoogLeNet taps the inception blocks' outputs (3b, 4e, 5b), not the pools after them.
    "googlenet": BackboneSpec("googlenet", 224, taps={8: 6, 16: 12, 32: 15}, **_IMAGENET),
}


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def build_classifier(
    name: str, *, pretrained: bool = False, n_classes: int | None = None, progress: bool = True
) -> nn.Module:
    """The classifier behind backbone ``name``, with random or pre-trained weights.

    Args:
        name: a key of :data:`BACKBONES`.
        pretrained: ImageNet weights for torchvision backbones (downloads once, to torch's
            cache); for ``"vgg16_caffe"`` the original Caffe VGG16 weights (also cached
            there, as ``hub/checkpoints/vgg16-00b39a1b.pth``); for lab backbones use
            :func:`pretrained_classifier`, which trains them.
        n_classes: override the number of output classes (random weights only).
    """
    spec = _spec(name)
    if spec.lab:
        if pretrained:
            return pretrained_classifier(name, progress=progress)
        kw = dict(spec.kwargs)
        if n_classes is not None:
            kw["n_classes"] = n_classes
        return TinyVGG(**kw)
    import torchvision.models as tvm

    if name == "vgg16_caffe":
        if not pretrained:
            return tvm.vgg16(**({} if n_classes is None else {"num_classes": n_classes}))
        if n_classes not in (None, 1000):
            raise ValueError("n_classes cannot change with ImageNet weights (1000 classes)")
        state = _load_caffe_vgg16(progress=progress)  # before building: fail fast offline
        net = tvm.vgg16()
        try:
            net.load_state_dict(_torchvision_vgg_keys(state), strict=True)
        except RuntimeError as e:
            raise RuntimeError(
                f"{_caffe_vgg16_path()} does not hold VGG16 weights in torchvision's or "
                f"jcjohnson/pytorch-vgg's layout ({e}); delete it to download it again"
            ) from e
        return net

    weights = None
    if pretrained:
        weights = {
            "vgg16": tvm.VGG16_Weights,
            "alexnet": tvm.AlexNet_Weights,
            "googlenet": tvm.GoogLeNet_Weights,
        }[name].IMAGENET1K_V1
        if n_classes not in (None, 1000):
            raise ValueError("n_classes cannot change with ImageNet weights (1000 classes)")
    kw = {} if n_classes is None or pretrained else {"num_classes": n_classes}
    if name == "googlenet":
        # No auxiliary heads: FCN-GoogLeNet uses only the final loss layer (paper, section 4.1).
        kw.update(aux_logits=False, init_weights=weights is None)
        if weights is not None:
            # torchvision's GoogLeNet weights came with aux heads; load them and drop the heads.
            net = tvm.googlenet(weights=weights, progress=progress)
            net.aux_logits, net.aux1, net.aux2 = False, None, None
            return net
    try:
        return getattr(tvm, name)(weights=weights, progress=progress, **kw)
    except (OSError, RuntimeError) as e:  # no network, or a broken download
        raise RuntimeError(
            f"could not load ImageNet weights for {name}: {e}. They download once from "
            "PyTorch's servers into $TORCH_HOME (default ~/.cache/torch); without network, "
            "use pretrained=False (random weights) or copy the weight file there."
        ) from e


def _caffe_vgg16_path() -> Path:
    """Where torch's hub cache keeps the Caffe VGG16 file (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _CAFFE_VGG16_FILE


def _load_caffe_vgg16(*, progress: bool) -> dict[str, torch.Tensor]:
    """The Caffe VGG16 state dict: from torch's hub cache, else downloaded there (hash-checked),
    from the main address or else the mirror."""
    path = _caffe_vgg16_path()
    failures = []
    for url in _CAFFE_VGG16_URLS:
        try:
            return torch.hub.load_state_dict_from_url(
                url, progress=progress, check_hash=True, map_location="cpu", weights_only=True
            )
        except (OSError, RuntimeError, HTTPException, pickle.UnpicklingError) as e:
            if path.exists():  # the file is there, so reading it failed, not the download
                raise RuntimeError(
                    f"could not read the Caffe VGG16 weights {path}: {type(e).__name__}: {e}. "
                    "The file is damaged or not a PyTorch state dict; delete it to download "
                    "it again, or replace it by hand."
                ) from e
            failures.append(f"{url} ({type(e).__name__}: {e})")
            last = e
    raise RuntimeError(
        f"could not download the Caffe VGG16 weights: tried {'; '.join(failures)}. Download "
        f"{_CAFFE_VGG16_FILE} by hand from one of those addresses and put it at {path} "
        "(torch's hub cache, under $TORCH_HOME, default ~/.cache/torch); without network, use "
        "pretrained=False (random weights)."
    ) from last


def _torchvision_vgg_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """jcjohnson/pytorch-vgg's names -> torchvision's: that converter's VGG put dropout before
    the linear layers, so fc6 / fc7 are ``classifier.1`` / ``classifier.4`` where torchvision
    has ``classifier.0`` / ``classifier.3`` (fc8 is ``classifier.6`` in both). A state dict
    already in torchvision's layout comes back unchanged."""
    rename = {"classifier.1.": "classifier.0.", "classifier.4.": "classifier.3."}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = next((to + key[len(fr) :] for fr, to in rename.items() if key.startswith(fr)), key)
        if new in out:
            raise RuntimeError(
                f"the Caffe VGG16 state dict has both {key!r} and {new!r}: it mixes "
                "jcjohnson/pytorch-vgg's layout with torchvision's"
            )
        out[new] = value
    return out


def trunk_layers(classifier: nn.Module) -> nn.Sequential:
    """The convolutional part of a classifier as one ``nn.Sequential`` (shared modules).

    VGG16, AlexNet and the lab backbones: ``classifier.features``. GoogLeNet: its stages in
    forward order, from ``conv1`` to ``inception5b`` (its input transform comes first, if on).
    """
    if hasattr(classifier, "inception5b"):
        names = [
            "conv1",
            "maxpool1",
            "conv2",
            "conv3",
            "maxpool2",
            "inception3a",
            "inception3b",
            "maxpool3",
            "inception4a",
            "inception4b",
            "inception4c",
            "inception4d",
            "inception4e",
            "maxpool4",
            "inception5a",
            "inception5b",
        ]
        layers = [getattr(classifier, n) for n in names]
        if getattr(classifier, "transform_input", False):
            layers.insert(0, GoogLeNetInput())
        return nn.Sequential(*layers)
    if hasattr(classifier, "features") and isinstance(classifier.features, nn.Sequential):
        return classifier.features
    raise TypeError(
        f"{type(classifier).__name__} has no `features` nn.Sequential (VGG / AlexNet / TinyVGG "
        "style) and is not a torchvision GoogLeNet; pass one of those"
    )


def _layer_stride(module: nn.Module) -> int:
    # Largest stride inside a layer: right for chains (GoogLeNet's BasicConv2d) and for
    # inception blocks (all branches stride 1).
    strides = [1]
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            strides.append(int(s))
    return max(strides)


def stage_taps(trunk: nn.Sequential, *, spec: BackboneSpec | None = None) -> dict[int, int]:
    """Stride -> index of the first trunk layer whose output has that total stride.

    For VGG16 this finds pool1..pool5 (strides 2..32): the layers FCN's skips score.
    """
    if spec is not None and spec.taps:
        return dict(spec.taps)
    taps, total = {}, 1
    for i, layer in enumerate(trunk):
        total *= _layer_stride(layer)
        taps.setdefault(total, i)
    taps.pop(1, None)
    return taps


class GoogLeNetInput(nn.Module):
    """torchvision GoogLeNet's ``transform_input``: from ImageNet normalisation to the
    per-channel scaling its ported weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5], device=x.device)
        shift = torch.tensor(
            [(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5], device=x.device
        )
        return x * scale.view(1, 3, 1, 1).to(x.dtype) + shift.view(1, 3, 1, 1).to(x.dtype)


# ----------------------------------------------------------------------------------------------
# Lab-bench pre-training: shipped weights for the default recipe, cached on disk for the others.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PretrainRecipe:
    n_train: int = 8000
    n_val: int = 600
    epochs: int = 2
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    version: int = 1  # bump when the data generator or the architecture changes


# Lab backbones whose default recipe's weights ship inside the package, in fcnlib/weights/.
_SHIPPED = ("tiny_vgg",)
_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# CPU kernels split their reductions by thread, so the weights depend on the thread count:
# pre-training always uses this many (2, the CPUs of a Colab runtime).
_PRETRAIN_THREADS = 2


def _recipe_key(name: str, recipe: _PretrainRecipe) -> str:
    text = repr((name, sorted(_spec(name).kwargs.items()), sorted(asdict(recipe).items())))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _shipped_path(name: str) -> Path:
    """The shipped weights file of ``name``'s default recipe (it may not exist)."""
    return _WEIGHTS_DIR / f"{name}-{_recipe_key(name, _PretrainRecipe())}.pt"


def _state_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _machine() -> str:
    """The CPU that ran a pre-training, for the record kept with the weights."""
    return f"{cpu_model()} (CPU, {_PRETRAIN_THREADS} threads)"


def _train_lab_classifier(
    name: str, recipe: _PretrainRecipe, *, progress: bool
) -> tuple[nn.Module, float]:
    """Pre-train lab backbone ``name`` by ``recipe``, on the CPU, whatever devices exist: CUDA
    training is not bit-reproducible. Always :data:`_PRETRAIN_THREADS` threads. Leaves the
    caller's random number generators and thread count alone."""
    from fcnlib.data import ShapesClassification
    from fcnlib.progress import progress_bar

    spec = _spec(name)
    size = spec.native_size
    # devices=[]: nothing runs on a GPU, so only the CPU generator is saved and restored
    with torch.random.fork_rng(devices=[]), torch_threads(_PRETRAIN_THREADS):
        gen = torch.Generator().manual_seed(recipe.seed)
        torch.default_generator.manual_seed(recipe.seed)  # initial weights and dropout
        net = TinyVGG(**spec.kwargs)
        train_x, train_y = ShapesClassification(
            "train", size=size, length=recipe.n_train, seed=recipe.seed
        ).materialize()
        val_x, val_y = ShapesClassification(
            "val", size=size, length=recipe.n_val, seed=recipe.seed
        ).materialize()
        steps = recipe.epochs * (recipe.n_train // recipe.batch_size)
        opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
        bar = progress_bar(total=steps, desc=f"pre-training {name} (CPU)", disable=not progress)
        for _ in range(recipe.epochs):
            net.train()
            order = torch.randperm(recipe.n_train, generator=gen)
            for s in range(recipe.n_train // recipe.batch_size):
                idx = order[s * recipe.batch_size : (s + 1) * recipe.batch_size]
                x, y = train_x[idx], train_y[idx]
                flip = torch.rand(len(idx), generator=gen) < 0.5  # mirroring keeps the class
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        net.eval()
        with torch.inference_mode():
            pred = torch.cat([net(val_x[i : i + 256]).argmax(1) for i in range(0, len(val_x), 256)])
    return net, float((pred == val_y).float().mean())


def _blob(name: str, recipe: _PretrainRecipe, net: nn.Module, val_accuracy: float) -> dict:
    """What a weights file holds (the shipped file and the cache entries alike)."""
    state = net.state_dict()
    return {
        "key": _recipe_key(name, recipe),
        "name": name,
        "recipe": asdict(recipe),
        "state_dict": state,
        "digest": _state_digest(state),
        "val_accuracy": val_accuracy,
        "torch_version": str(torch.__version__),
        "made_on": _machine(),
    }


_BLOB_KEYS = frozenset({"key", "digest", "state_dict", "val_accuracy"})


def _read_weights(path: Path, name: str, key: str) -> tuple[nn.Module | None, str]:
    """The net stored at ``path``, or None and what is wrong with the file.

    Only a file that is damaged, of another kind, or made by another recipe or architecture is
    "unusable"; any other exception (a bug, a full disk, an interrupt) propagates, so that it is
    never mistaken for a stale file and answered by a silent retraining.
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError) as e:  # truncated, or not torch's
        return None, f"it could not be read ({type(e).__name__}: {e})"
    if not isinstance(blob, dict) or not blob.keys() >= _BLOB_KEYS:
        return None, f"it is not a weights file of fcnlib's (a dict with {sorted(_BLOB_KEYS)})"
    if blob["key"] != key:
        return None, "it was made by another recipe"
    state = blob["state_dict"]
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        return None, "its state_dict is not a dict of tensors"
    if _state_digest(state) != blob["digest"]:
        return None, "its weights do not match their checksum"
    net = TinyVGG(**_spec(name).kwargs)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:  # missing, unexpected or differently shaped weights
        return None, f"its weights do not fit {name}'s architecture ({e})"
    net.val_accuracy = float(blob["val_accuracy"])
    return net.eval(), ""


def _load_shipped(name: str) -> nn.Module:
    path = _shipped_path(name)
    how = (
        "Reinstall fcnlib (pip install --force-reinstall --no-deps ...), or re-create the "
        f"weights from their recipe with pretrained_classifier({name!r}, retrain=True) (about "
        "a minute of CPU, cached under $FCN_CACHE/backbones); fcnlib's maintainers regenerate "
        f"the file with fcnlib.backbones._write_shipped_weights({name!r})."
    )
    if not path.exists():
        raise RuntimeError(
            f"the weights of {name!r}'s default recipe should ship with fcnlib as {path}, but "
            "that file is missing: the installed package is damaged or incomplete, or the "
            f"recipe or the architecture changed without regenerating the file. {how}"
        )
    net, problem = _read_weights(path, name, _recipe_key(name, _PretrainRecipe()))
    if net is None:
        raise RuntimeError(
            f"the weights shipped with fcnlib, {path}, are unusable: {problem}. The installed "
            f"fcnlib package is damaged. {how}"
        )
    return net


def pretrained_classifier(
    name: str = "tiny_vgg",
    *,
    cache: bool | str | os.PathLike = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    recipe: _PretrainRecipe | None = None,
    retrain: bool = False,
) -> nn.Module:
    """A lab-bench classifier pre-trained on :class:`~fcnlib.data.ShapesClassification`.

    The default recipe's weights of ``"tiny_vgg"`` ship with fcnlib: they are loaded,
    checksum-verified, never trained (a damaged file is an error, not a silent retraining).
    Other recipes and backbones, and ``retrain=True``, run the recipe on the CPU (about a
    minute on 2 cores; the same weights whatever GPU is present) and cache the result under
    ``$FCN_CACHE/backbones`` (``cache`` may name another directory, or be False). A cache entry
    whose recipe, weights checksum or format does not match is reported and rebuilt, never
    loaded. The returned net is in eval mode; ``net.val_accuracy`` holds its held-out accuracy.

    Args:
        device: where the returned net lives (default: the CPU; ``"auto"``: see
            :func:`~fcnlib.config.pick_device`). It does not change the weights.
        retrain: re-create the weights from the recipe instead of loading the shipped ones
            (a valid cache entry of an earlier retraining is reused; ``cache=False`` always
            trains). The package's file is never overwritten.
    """
    spec = _spec(name)
    if not spec.lab:
        return build_classifier(name, pretrained=True, progress=progress)
    recipe = recipe or _PretrainRecipe()
    if name in _SHIPPED and recipe == _PretrainRecipe() and not retrain:
        net = _load_shipped(name)
    else:
        net = _cached_or_trained(name, recipe, cache=cache, progress=progress)
    if device is None:
        return net
    from fcnlib.config import pick_device

    return net.to(pick_device(device))


def _cached_or_trained(
    name: str, recipe: _PretrainRecipe, *, cache: bool | str | os.PathLike, progress: bool
) -> nn.Module:
    key = _recipe_key(name, recipe)
    folder = None if cache is False else (
        cache_dir() / "backbones" if cache is True else Path(cache)
    )  # fmt: skip
    path = None if folder is None else folder / f"{name}-{key}.pt"
    if path is not None and path.exists():
        net, problem = _read_weights(path, name, key)
        if net is not None:
            return net
        warnings.warn(
            f"cached backbone {path} is unusable: {problem}; training it again", stacklevel=3
        )
    net, acc = _train_lab_classifier(name, recipe, progress=progress)
    net.val_accuracy = acc
    if path is not None:
        atomic_torch_save(_blob(name, recipe, net, acc), path)
    return net.eval()


def _write_shipped_weights(name: str = "tiny_vgg", *, progress: bool = True) -> Path:
    """Train ``name`` by its default recipe (on the CPU) and write the file fcnlib ships,
    replacing the one of an older recipe. For fcnlib's maintainers, after a change to the
    recipe, the data generator or the architecture (bump ``_PretrainRecipe.version``)::

        python -c "from fcnlib.backbones import _write_shipped_weights as w; w()"
    """
    if name not in _SHIPPED:
        raise ValueError(f"fcnlib ships weights only for {_SHIPPED}, not {name!r}")
    recipe = _PretrainRecipe()
    net, acc = _train_lab_classifier(name, recipe, progress=progress)
    path = atomic_torch_save(_blob(name, recipe, net, acc), _shipped_path(name))
    path.chmod(0o644)  # a package file: readable by all (the temporary file it was is not)
    for old in path.parent.glob(f"{name}-*.pt"):
        if old != path:
            old.unlink()
    return path

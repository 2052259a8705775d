"""Backbones: the classifiers that FCNs are made from.

The paper starts from ImageNet classifiers (AlexNet, VGG16, GoogLeNet) and turns them into dense
predictors. fcnlib offers the same three from torchvision (ImageNet weights when asked for,
random weights offline) and, for the lab bench, small VGG-style classifiers that fcnlib
pre-trains itself on :class:`~fcnlib.data.ShapesClassification` crops, our stand-in for ImageNet.

The lab backbones' pre-training, and the weights of ``"tiny_vgg"`` that ship inside the
package, are in :mod:`fcnlib.pretrain` (:func:`~fcnlib.pretrain.pretrained_classifier`, which
can also be imported from here).

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
import pickle
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "GoogLeNetInput",
    "TinyVGG",
    "backbone_spec",
    "build_classifier",
    "head_layers",
    "hub_state_dict",
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


def backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of ``name``; an unknown name is a ValueError listing the
    known ones."""
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
    spec = backbone_spec(name)
    if spec.lab:
        if pretrained:
            from fcnlib.pretrain import pretrained_classifier

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

    if pretrained:
        if n_classes not in (None, 1000):
            raise ValueError("n_classes cannot change with ImageNet weights (1000 classes)")
        return _imagenet_classifier(name, progress=progress)
    kw = {} if n_classes is None else {"num_classes": n_classes}
    if name == "googlenet":
        # No auxiliary heads: FCN-GoogLeNet uses only the final loss layer (paper, section 4.1).
        kw.update(aux_logits=False, init_weights=True)
    return getattr(tvm, name)(weights=None, **kw)


# torchvision's weight enum of each ImageNet backbone (the file's address and digest).
_TORCHVISION_WEIGHTS = {
    "vgg16": "VGG16_Weights",
    "alexnet": "AlexNet_Weights",
    "googlenet": "GoogLeNet_Weights",
}


def _imagenet_classifier(name: str, *, progress: bool) -> nn.Module:
    """torchvision's ImageNet classifier ``name`` with its weights, read through
    :func:`hub_state_dict` (digest checked, ``weights_only=True``) rather than torchvision's
    own loader, which trusts any file already in the cache."""
    import torchvision.models as tvm

    weights = getattr(tvm, _TORCHVISION_WEIGHTS[name]).IMAGENET1K_V1
    state = hub_state_dict((weights.url,), progress=progress, what=f"ImageNet weights of {name}")
    if name == "googlenet":
        # The weights hold the auxiliary heads and expect torchvision's input transform;
        # the heads are dropped once loaded (FCN-GoogLeNet uses only the final loss layer).
        net = tvm.googlenet(aux_logits=True, transform_input=True, init_weights=False)
        net.load_state_dict(state)
        net.aux_logits, net.aux1, net.aux2 = False, None, None
        return net
    net = getattr(tvm, name)(**({"init_weights": False} if name == "vgg16" else {}))
    net.load_state_dict(state)
    return net


def _caffe_vgg16_path() -> Path:
    """Where torch's hub cache keeps the Caffe VGG16 file (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _CAFFE_VGG16_FILE


def _load_caffe_vgg16(*, progress: bool) -> dict[str, torch.Tensor]:
    """The Caffe VGG16 state dict, from the main address or else the mirror."""
    return hub_state_dict(_CAFFE_VGG16_URLS, progress=progress, what="Caffe VGG16 weights")


def hub_state_dict(urls: tuple[str, ...], *, progress: bool, what: str) -> dict:
    """The state dict that ``urls`` (one file: an address and its mirrors) point to, from
    torch's hub cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch``), downloaded
    there first when missing.

    The file's name carries the start of its SHA-256 (``vgg16-397923af.pth``): the digest is
    checked on download and again on every use, so a file changed in the cache is refused,
    and it is read with ``torch.load(weights_only=True)``, so a planted pickle never runs code
    (torchvision checks the digest on download only and unpickles whatever the cache holds).
    """
    name = urls[0].rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    found = torch.hub.HASH_REGEX.search(name)
    if found is None:
        raise ValueError(f"{name} carries no SHA-256 prefix (NAME-<hex>.pth) to check it by")
    digest = found.group(1)
    if not path.exists():
        _download(urls, path, digest, progress=progress, what=what)
    actual = _sha256(path)
    if not actual.startswith(digest):
        raise RuntimeError(
            f"the {what} {path} are not the file their name promises (SHA-256 {actual[:16]}..., "
            f"expected {digest}...): the file was changed or damaged, so it is not used. Delete "
            "it to download it again, or use pretrained=False (random weights)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:  # an older torch's format?
        raise RuntimeError(
            f"could not read the {what} {path}: {type(e).__name__}: {e}. Delete it to download "
            "it again, or replace it by hand."
        ) from e


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(urls: tuple[str, ...], path: Path, digest: str, *, progress: bool, what: str):
    """Download the first of ``urls`` that answers to ``path`` (hash-checked by torch)."""
    failures = []
    for url in urls:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hash_prefix=digest, progress=progress)
            return
        except (OSError, RuntimeError, HTTPException) as e:  # no network, a broken download
            failures.append(f"{url} ({type(e).__name__}: {e})")
            last = e
    raise RuntimeError(
        f"could not download the {what}: tried {'; '.join(failures)}. They download once into "
        f"torch's hub cache ($TORCH_HOME, default ~/.cache/torch): download {path.name} by hand "
        f"from that address and put it at {path}; without network, use pretrained=False "
        "(random weights)."
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
    if _is_googlenet(classifier):
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


def head_layers(classifier: nn.Module) -> list[nn.Module]:
    """The classifier's head after the trunk, in forward order (flattening aside).

    VGG16, AlexNet and the lab backbones: ``classifier.classifier``'s layers (any adaptive pool
    before them is left out: at the native size it is the identity). GoogLeNet: its global
    average pool over the 7 x 7 grid as the ``nn.AvgPool2d(7, stride=1)`` that computes it
    there, then dropout and fc. The modules are the classifier's own (the pool is new).
    """
    if _is_googlenet(classifier):
        return [nn.AvgPool2d(7, stride=1), classifier.dropout, classifier.fc]
    head = getattr(classifier, "classifier", None)
    if not isinstance(head, nn.Sequential) or not any(isinstance(m, nn.Linear) for m in head):
        raise TypeError(
            f"{type(classifier).__name__} has no `classifier` nn.Sequential of Linear layers "
            "(VGG / AlexNet / TinyVGG style) and is not a GoogLeNet"
        )
    return list(head)


def _is_googlenet(classifier: nn.Module) -> bool:
    """torchvision's GoogLeNet (the one layout here that is not ``features`` + ``classifier``)."""
    return hasattr(classifier, "inception5b")


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


def __getattr__(name: str):
    # pretrained_classifier lives in fcnlib.pretrain; the chapters import it from here
    if name == "pretrained_classifier":
        from fcnlib.pretrain import pretrained_classifier

        return pretrained_classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

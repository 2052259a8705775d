"""From classifier to FCN: convolutionalization and the FCN-32s/16s/8s skip architectures.

Three steps turn a classifier into a dense predictor (Long, Shelhamer & Darrell, 2015):

1. **Convolutionalize**: a fully connected layer is a convolution whose kernel covers its whole
   input. fc6 of VGG16 (4096 x 25088) becomes a 4096 x 512 x 7 x 7 convolution, fc7 and fc8
   1 x 1 convolutions; the net now takes any input size and outputs a coarse map of scores.
2. **Decapitate and score**: drop the classifier's last layer and put a 1 x 1 convolution
   ``score_fr`` with one output per segmentation class on top (zero-initialised).
3. **Upsample and fuse**: transposed convolutions initialised to bilinear interpolation bring the
   stride-32 scores back to the input size (FCN-32s). FCN-16s first adds scores from ``pool4``
   (``score_pool4``) to the 2x-upsampled stride-32 scores (``upscore2``); FCN-8s also adds
   ``pool3``'s scores. The same construction continues to finer strides.

Alignment, two ways (``align=``):

* ``"same"`` (default, padding-free): every layer is padded so that its output stays centred on
  its input; feature maps at every stride are in register, all crop offsets are 0, and no work is
  wasted on a border.
* ``"caffe"``: the original nets. ``conv1_1`` is padded by 100 so that fc6 (no padding) has
  enough input even for small images, and every score map is then cropped back into register.
  The crop offsets are computed from the layers' coordinate maps, as the official code did;
  for VGG16 they are the official 5, 9 and 31 (FCN-8s).

>>> net = fcn8s("tiny_vgg", n_classes=7)
>>> net(torch.zeros(1, 3, 37, 50)).shape  # any size, odd and small included
torch.Size([1, 7, 37, 50])
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from fcnlib import receptive_field as rf
from fcnlib.backbones import BACKBONES, build_classifier, stage_taps, trunk_layers
from fcnlib.upsample import BilinearUpsample, init_bilinear_

__all__ = ["FCN", "convolutionalize", "fcn", "fcn8s", "fcn16s", "fcn32s", "init_from"]

_POOL_NAME = {2: "pool1", 4: "pool2", 8: "pool3", 16: "pool4", 32: "pool5"}


# ----------------------------------------------------------------------------------------------
# 1. Convolutionalization
# ----------------------------------------------------------------------------------------------


def _out_channels(trunk: nn.Sequential) -> int:
    """Channels leaving a trunk: its last convolution's, or an inception block's concatenation."""
    if type(trunk[-1]).__name__ == "Inception":
        return sum(_branch_channels(b) for b in _branches(trunk[-1]))
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise TypeError("the classifier's trunk has no Conv2d layer")
    return convs[-1].out_channels


def _branches(inception: nn.Module) -> list[nn.Module]:
    return [getattr(inception, f"branch{i}") for i in range(1, 5)]


def _branch_channels(branch: nn.Module) -> int:
    convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def _fc_layers(classifier: nn.Module) -> list[nn.Module]:
    """The classifier's head after the trunk, in order (pooling and flattening aside)."""
    if hasattr(classifier, "inception5b"):  # GoogLeNet: global average pool, dropout, fc
        return [classifier.dropout, classifier.fc]
    head = getattr(classifier, "classifier", None)
    if not isinstance(head, nn.Sequential) or not any(isinstance(m, nn.Linear) for m in head):
        raise TypeError(
            f"{type(classifier).__name__} has no `classifier` nn.Sequential of Linear layers "
            "(VGG / AlexNet / TinyVGG style) and is not a GoogLeNet"
        )
    return list(head)


def _linear_to_conv(linear: nn.Linear, in_channels: int) -> nn.Conv2d:
    k2, rem = divmod(linear.in_features, in_channels)
    k = math.isqrt(k2)
    if rem or k * k != k2:
        raise ValueError(
            f"cannot reshape a Linear with {linear.in_features} inputs into a square kernel "
            f"over {in_channels} channels: expected in_features = {in_channels} * k * k"
        )
    conv = nn.Conv2d(in_channels, linear.out_features, k, bias=linear.bias is not None)
    with torch.no_grad():
        # Flattening a (C, k, k) map is row-major, so the weight rows reshape directly.
        conv.weight.copy_(linear.weight.reshape(linear.out_features, in_channels, k, k))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv.to(linear.weight.device, linear.weight.dtype)


def convolutionalize(classifier: nn.Module) -> nn.Sequential:
    """The classifier as a fully convolutional network with the same weights.

    Each ``nn.Linear`` becomes a convolution: the first (fc6) with a kernel covering the whole
    feature map it was trained on (e.g. 7 x 7 for VGG16 at 224), the later ones 1 x 1. On the
    classifier's native input size the result outputs ``(N, n_classes, 1, 1)`` equal to the
    classifier's logits; on larger inputs it outputs a heatmap ``(N, n_classes, h, w)``.

    Supports VGG/AlexNet-style nets (``features`` + ``classifier``), torchvision GoogLeNet and
    fcnlib's lab backbones. The classifier is not modified (its layers are copied). Adaptive
    pooling before the head is dropped: at the native size it is the identity. GoogLeNet's global
    average pool becomes a 7 x 7 average pool with stride 1.

    >>> from fcnlib.backbones import build_classifier
    >>> clf = build_classifier("tiny_vgg").eval()
    >>> fcn = convolutionalize(clf).eval()
    >>> x = torch.rand(1, 3, 96, 96)
    >>> torch.allclose(fcn(x).flatten(1), clf(x), atol=1e-5)
    True
    """
    trunk = copy.deepcopy(trunk_layers(classifier))
    channels = _out_channels(trunk)
    layers: list[nn.Module] = []
    if hasattr(classifier, "inception5b"):
        layers.append(nn.AvgPool2d(7, stride=1))  # was the global average over the 7 x 7 grid
    for m in _fc_layers(classifier):
        if isinstance(m, nn.Linear):
            conv = _linear_to_conv(m, channels)
            layers.append(conv)
            channels = conv.out_channels
        else:
            layers.append(copy.deepcopy(m))  # ReLU and dropout act elementwise on maps too
    return nn.Sequential(OrderedDict(features=trunk, classifier=nn.Sequential(*layers)))


# ----------------------------------------------------------------------------------------------
# 2-3. The FCN: score, upsample, fuse
# ----------------------------------------------------------------------------------------------


def _geometry(modules: list[nn.Module]) -> list[nn.Module]:
    """The chain of layers that move coordinates, for :mod:`fcnlib.receptive_field`.

    GoogLeNet's BasicConv2d is a convolution followed by batch norm; its inception blocks are
    parallel blocks, which receptive_field reads as one layer.
    """
    out: list[nn.Module] = []
    for m in modules:
        if isinstance(m, nn.Sequential):
            out += _geometry(list(m))
        elif type(m).__name__ == "BasicConv2d":
            out.append(m.conv)
        else:
            out.append(m)
    return out


def _coord_map(modules: list[nn.Module]) -> rf.CoordMap:
    return rf.coord_map(_geometry(modules))


class FCN(nn.Module):
    """A fully convolutional network: backbone stages -> fc6/fc7 as convolutions -> score_fr,
    then skip fusion from finer stages and upsampling back to the input size.

    Build one with :func:`fcn32s`, :func:`fcn16s`, :func:`fcn8s` or :func:`fcn`.

    Attributes:
        stride: output stride before the final upsampling (32, 16, 8, 4).
        features: ``nn.ModuleDict`` of trunk stages, ending at pool2 .. pool5.
        fc: fc6 and fc7 as convolutions (with their ReLU and dropout).
        score_fr, score_pool4, score_pool3 (...): 1 x 1 class-score layers.
        upscore2, upscore_pool4 (...): learnable 2x upsampling, initialised to bilinear.
        crop_offsets: score-layer name -> crop offset (all 0 for ``align="same"``).
        mean, std, bgr: the input normalisation (see :meth:`normalize`): inputs are RGB in
            [0, 1]; ``bgr`` reverses them to BGR first, for weights trained that way (Caffe's).
    """

    def __init__(
        self,
        classifier: nn.Module,
        *,
        n_classes: int,
        stride: int = 32,
        align: str = "same",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        bgr: bool = False,
        taps: dict[int, int] | None = None,
        learnable_upsampling: bool = True,
        learnable_final: bool = False,
    ) -> None:
        super().__init__()
        if align not in ("same", "caffe"):
            raise ValueError(f"align must be 'same' or 'caffe', got {align!r}")
        if not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
        full = convolutionalize(classifier)
        trunk, head = full.features, list(full.classifier)
        taps = stage_taps(trunk) if taps is None else taps
        if stride not in taps or 32 not in taps:
            raise ValueError(
                f"output stride {stride} is not available: this backbone's stages end at "
                f"strides {sorted(taps)}; choose one of those"
            )
        self.align, self.stride, self.n_classes = align, stride, n_classes
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.bgr = bool(bgr)  # like mean and std, not saved: the backbone's spec sets it

        for m in trunk.modules():
            if isinstance(m, nn.MaxPool2d):
                m.ceil_mode = True  # as Caffe: partial windows at the end, every pixel covered
            if align == "same" and isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
                # Centre every odd window on its input (AlexNet's conv1 and pools are not):
                # outputs then exist for any input size, down to a single pixel.
                k = _pair(m.kernel_size)
                d = _pair(getattr(m, "dilation", 1))
                m.padding = tuple(
                    (di * (ki - 1)) // 2 if ki % 2 else p
                    for ki, di, p in zip(k, d, _pair(m.padding), strict=True)
                )
        if align == "caffe":
            first = next(m for m in trunk.modules() if isinstance(m, nn.Conv2d))
            first.padding = (100, 100)

        # Trunk stages, split where the skips tap them (same names for 32s/16s/8s, so that
        # staged training can copy a coarser net's weights by name).
        bounds = sorted((s, i) for s, i in taps.items() if s >= 4 and s <= 32)
        self.features = nn.ModuleDict()
        start = 0
        for s, i in bounds:
            self.features[_POOL_NAME.get(s, f"stride{s}")] = trunk[start : i + 1]
            start = i + 1
        self._stage_strides = [s for s, _ in bounds]

        # fc6/fc7 (the classifier's last layer is dropped: score_fr replaces it).
        last_conv = max(i for i, m in enumerate(head) if isinstance(m, nn.Conv2d | nn.AvgPool2d))
        fc = head[:last_conv]
        if fc and isinstance(fc[0], nn.AvgPool2d):  # GoogLeNet: the paper drops the final pool
            fc = fc[1:]
        convs = [m for m in fc if isinstance(m, nn.Conv2d)]
        if align == "same" and convs:
            k = convs[0].kernel_size[0]
            # Pad fc6 so its output keeps pool5's grid; an even kernel needs one more on the right.
            fc.insert(
                fc.index(convs[0]), nn.ZeroPad2d(((k - 1) // 2, k // 2, (k - 1) // 2, k // 2))
            )
        self.fc = nn.Sequential(*fc)
        channels = convs[-1].out_channels if convs else _out_channels(trunk)

        self.score_fr = nn.Conv2d(channels, n_classes, 1)
        # Skips, coarse to fine: stride 16 scores pool4, 8 scores pool3, ...
        self.skip_strides = [s for s in (16, 8, 4) if s >= stride]
        for s in self.skip_strides:
            cin = _channels_after(self._stages_to(s))
            setattr(self, f"score_{_POOL_NAME[s]}", nn.Conv2d(cin, n_classes, 1))
            setattr(self, self._up_name(s), self._upsample(2, learnable_upsampling))
        self.final_name = "upscore" if stride == 32 else f"upscore{stride}"
        setattr(self, self.final_name, self._upsample(stride, learnable_final))
        if align == "caffe" and self._final_shift().denominator == 2:
            # Half a pixel out: a kernel one shorter moves the final map by half a pixel, as
            # the original FCN-AlexNet did (kernel 63, stride 32).
            k = getattr(self, self.final_name).kernel_size[0] - 1
            setattr(self, self.final_name, self._upsample(stride, learnable_final, kernel_size=k))
        for name, m in self.named_children():
            if name.startswith("score_"):  # the paper zero-initialises class-score layers
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
        self.crop_offsets = self._compute_offsets()

    def _upsample(self, factor: int, learnable: bool, kernel_size: int | None = None):
        up = BilinearUpsample(self.n_classes, factor, learnable=learnable)
        if kernel_size is not None:
            up.weight = nn.Parameter(up.weight[..., :kernel_size, :kernel_size].clone(),
                                     requires_grad=learnable)  # fmt: skip
            up.kernel_size = (kernel_size, kernel_size)
            init_bilinear_(up)
        if self.align == "caffe":
            up.padding = (0, 0)  # the original deconvolutions: unpadded, cropped afterwards
        return up

    def _path_to_final_input(self) -> list[nn.Module]:
        path = [*self._stages_to(32), self.fc, self.score_fr]
        return path + [getattr(self, self._up_name(s)) for s in self.skip_strides]

    def _final_shift(self) -> Fraction:
        final = [*self._path_to_final_input(), getattr(self, self.final_name)]
        return Fraction(_coord_map(final).shift)

    @staticmethod
    def _up_name(s: int) -> str:
        return "upscore2" if s == 16 else f"upscore_{_POOL_NAME[2 * s]}"

    def _stages_to(self, s: int) -> list[nn.Module]:
        return [self.features[_POOL_NAME[t]] for t in self._stage_strides if t <= s]

    def _compute_offsets(self) -> dict[str, int]:
        """Crop offsets from coordinate maps: where each map must be cut to be in register."""
        offsets = {}
        path = [*self._stages_to(32), self.fc, self.score_fr]  # input -> current score map
        for s in self.skip_strides:
            path = [*path, getattr(self, self._up_name(s))]
            skip = [*self._stages_to(s), getattr(self, f"score_{_POOL_NAME[s]}")]
            offsets[f"score_{_POOL_NAME[s]}"] = self._offset(_coord_map(skip), _coord_map(path))
        final = [*self._path_to_final_input(), getattr(self, self.final_name)]
        offsets[self.final_name] = self._offset(_coord_map(final), rf.CoordMap(1.0, 0.0))
        return offsets

    def _offset(self, source: rf.CoordMap, reference: rf.CoordMap) -> int:
        if source.scale != reference.scale:
            raise AssertionError(f"scales differ: {source.scale} vs {reference.scale}")
        exact = Fraction(source.shift) - Fraction(reference.shift)
        if exact.denominator != 1:
            if self.align == "caffe":
                raise ValueError(
                    f"with align='caffe' this backbone's maps are {float(exact)} pixels out of "
                    "register, which no crop can fix (the original code asserted whole offsets); "
                    "use align='same', or a coarser stride"
                )
            # 'same' nets whose pools mix even and odd windows can be off by a fraction: round.
            return round(exact)
        return int(exact)  # negative: the map starts inside the reference; padded at run time

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)``, RGB in [0, 1] -> what the backbone's weights expect:
        channels reversed to BGR if ``bgr``, then ``(x - mean) / std``."""
        if self.bgr:
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def score_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate map by its paper name, for inspection: ``pool3``.. ``pool5``,
        ``score_fr``, ``upscore2``, ``score_pool4``, ``fuse_pool4``, ..., and the final
        ``score`` ``(N, n_classes, H, W)``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected images (N, 3, H, W), got shape {tuple(x.shape)}; add a batch "
                "dimension with x.unsqueeze(0) for one image, and convert grey/RGBA images to RGB"
            )
        h, w = x.shape[-2:]
        maps: dict[str, torch.Tensor] = {}
        x = self.normalize(x)
        for name, stage in self.features.items():
            x = maps[name] = stage(x)  # (N, C_s, ~H/s, ~W/s)
        score = maps["score_fr"] = self.score_fr(self.fc(x))  # (N, n_classes, ~H/32, ~W/32)
        for s in self.skip_strides:
            pool = _POOL_NAME[s]
            up = maps[self._up_name(s)] = getattr(self, self._up_name(s))(score)  # 2x finer
            skip = maps[f"score_{pool}"] = getattr(self, f"score_{pool}")(maps[pool])
            score = maps[f"fuse_{pool}"] = _fuse(up, skip, self.crop_offsets[f"score_{pool}"])
        out = maps[self.final_name] = getattr(self, self.final_name)(score)  # >= (H, W)
        maps["score"] = _crop(out, self.crop_offsets[self.final_name], h, w)  # (N, C, H, W)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes, H, W)`` for images ``(N, 3, H, W)`` in [0, 1]."""
        return self.score_maps(x)["score"]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _channels_after(stages: list[nn.Sequential]) -> int:
    """Channels leaving the last of ``stages`` (a stage may hold only pooling, as in AlexNet)."""
    return _out_channels(nn.Sequential(*[m for stage in stages for m in stage]))


def _fuse(up: torch.Tensor, skip: torch.Tensor, offset: int) -> torch.Tensor:
    """``up + skip`` in up's frame: skip cut at ``offset`` (or, if negative, zero-padded in
    front), then both cut at the end to their overlap. The result keeps up's origin."""
    skip = skip[..., offset:, offset:] if offset >= 0 else F.pad(skip, (-offset, 0, -offset, 0))
    h, w = min(up.shape[-2], skip.shape[-2]), min(up.shape[-1], skip.shape[-1])
    return up[..., :h, :w] + skip[..., :h, :w]


def _crop(t: torch.Tensor, offset: int, h: int, w: int) -> torch.Tensor:
    """The (h, w) window of ``t`` starting at ``offset``, edge-replicated where ``t`` ends short.

    Nets whose strides tile the image exactly (VGG-style, 'same') never need the padding;
    others (AlexNet, GoogLeNet with its mixed pools) can end a few pixels short of the border.
    """
    before = max(-offset, 0)
    after_h = max(offset + h - t.shape[-2], 0)
    after_w = max(offset + w - t.shape[-1], 0)
    if before or after_h or after_w:
        t = F.pad(t, (before, after_w, before, after_h), mode="replicate")
    start = offset + before
    return t[..., start : start + h, start : start + w]


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------


def fcn(
    backbone: str | nn.Module = "tiny_vgg",
    *,
    n_classes: int = 21,
    stride: int = 32,
    pretrained: bool = False,
    align: str = "same",
    learnable_upsampling: bool = True,
    learnable_final: bool = False,
    progress: bool = True,
) -> FCN:
    """An FCN of any output stride on a named backbone (or a classifier module).

    Args:
        backbone: a key of :data:`fcnlib.backbones.BACKBONES` (``"tiny_vgg"``, ``"vgg16"``,
            ``"vgg16_caffe"``, ``"alexnet"``, ``"googlenet"``) or a classifier module (its
            inputs are then used as they come: RGB in [0, 1], no normalisation).
        n_classes: segmentation classes, background included (void 255 is not a class).
        stride: 32 (FCN-32s), 16, 8, or 4 (one skip further, to show diminishing returns).
        pretrained: ImageNet weights (torchvision backbones; ``"vgg16_caffe"``: the original
            Caffe VGG16 the paper used) or the cached lab-bench pre-training (lab backbones);
            False gives random weights offline.
        align: ``"same"`` (padding-free, default) or ``"caffe"`` (pad 100 and crop).
        learnable_upsampling: learn the 2x upsampling layers (initialised to bilinear).
        learnable_final: learn the final upsampling too (the paper keeps it fixed).

    Returns:
        :class:`FCN` mapping float ``(N, 3, H, W)`` in [0, 1] to logits ``(N, n_classes, H, W)``.
    """
    if isinstance(backbone, nn.Module):
        classifier, mean, std, bgr, taps = backbone, (0.0,) * 3, (1.0,) * 3, False, None
    else:
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
        spec = BACKBONES[backbone]
        classifier = build_classifier(backbone, pretrained=pretrained, progress=progress)
        mean, std, bgr = spec.mean, spec.std, spec.bgr
        taps = stage_taps(trunk_layers(classifier), spec=spec)
    return FCN(
        classifier,
        n_classes=n_classes,
        stride=stride,
        align=align,
        mean=mean,
        std=std,
        bgr=bgr,
        taps=taps,
        learnable_upsampling=learnable_upsampling,
        learnable_final=learnable_final,
    )


def fcn32s(backbone: str | nn.Module = "tiny_vgg", *, n_classes: int = 21, **kwargs) -> FCN:
    """FCN-32s: score_fr upsampled 32x. See :func:`fcn` for the options."""
    return fcn(backbone, n_classes=n_classes, stride=32, **kwargs)


def fcn16s(backbone: str | nn.Module = "tiny_vgg", *, n_classes: int = 21, **kwargs) -> FCN:
    """FCN-16s: 2x-upsampled score_fr + score_pool4, upsampled 16x. See :func:`fcn`."""
    return fcn(backbone, n_classes=n_classes, stride=16, **kwargs)


def fcn8s(backbone: str | nn.Module = "tiny_vgg", *, n_classes: int = 21, **kwargs) -> FCN:
    """FCN-8s: FCN-16s's fusion + score_pool3, upsampled 8x. See :func:`fcn`."""
    return fcn(backbone, n_classes=n_classes, stride=8, **kwargs)


@torch.no_grad()
def init_from(finer: FCN, coarser: FCN) -> FCN:
    """Staged training: start ``finer`` (e.g. FCN-16s) from a trained ``coarser`` (FCN-32s).

    Copies every parameter the two share by name (backbone, fc6/fc7, score_fr, and the coarser
    net's skips); the finer net's new score layer keeps its zero initialisation, so before any
    training its stride-16 scores are exactly the coarser net's scores upsampled 2x.
    Returns ``finer``.
    """
    if finer.stride >= coarser.stride:
        raise ValueError(
            f"init_from expects a finer net: got strides {finer.stride} and {coarser.stride}"
        )
    if finer.align != coarser.align or finer.n_classes != coarser.n_classes:
        raise ValueError("both nets need the same align and n_classes")
    if finer.bgr != coarser.bgr or not all(
        torch.equal(getattr(finer, b).cpu(), getattr(coarser, b).cpu()) for b in ("mean", "std")
    ):
        raise ValueError(
            "both nets need the same input normalisation (mean, std, bgr): their weights were "
            "trained on differently normalised inputs; build both on the same backbone"
        )
    own = finer.state_dict()
    for name, value in coarser.state_dict().items():
        # Names are shared on purpose (features.*, fc.*, score_fr, score_pool4, upscore2, ...);
        # the coarser net's final upsampling is named after its stride and so never matches.
        if name in own and own[name].shape == value.shape:
            own[name].copy_(value)
    return finer

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

Beyond RGB, and beyond skips (the paper's NYUDv2 experiments, and where FCNs went next):

* **Early fusion** (:func:`expand_input`): conv1 takes RGB-D, four channels, its RGB filters
  kept from the RGB net. The paper found it helps little.
* **Late fusion** (:class:`LateFusion`): an RGB net and a depth (HHA) net whose scores are summed.
* **Dilation** (:func:`dilate_to_stride`): the trunk's last pools keep their windows but stop
  downsampling, and every later filter is rarefied, as shift-and-stitch would (DeepLab's
  "atrous" trunk): FCN-32s's head then predicts at stride 8 with the same weights.

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
from fcnlib.backbones import (
    BACKBONES,
    GoogLeNetInput,
    build_classifier,
    head_layers,
    stage_taps,
    trunk_layers,
)
from fcnlib.rarefy import rarefy_layer
from fcnlib.upsample import BilinearUpsample, init_bilinear_

__all__ = [
    "FCN",
    "LateFusion",
    "convolutionalize",
    "dilate_to_stride",
    "expand_input",
    "fcn",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "init_from",
]

_POOL_NAME = {2: "pool1", 4: "pool2", 8: "pool3", 16: "pool4", 32: "pool5"}
_STRIDES = (32, 16, 8, 4)  # the output strides an FCN can have: FCN-32s, 16s, 8s, 4s


# ----------------------------------------------------------------------------------------------
# 1. Convolutionalization
# ----------------------------------------------------------------------------------------------


def _out_channels(trunk: nn.Sequential) -> int:
    """Channels leaving a trunk: its last convolution's, or an inception block's concatenation."""
    parallel = rf.branches(trunk[-1])
    if parallel is not None:  # GoogLeNet's inception block: the branches' channels, concatenated
        return sum(_branch_channels(b) for b in parallel)
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise TypeError("the classifier's trunk has no Conv2d layer")
    return convs[-1].out_channels


def _branch_channels(branch: nn.Module) -> int:
    convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


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
    for m in head_layers(classifier):
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
        in_channels: 3 (RGB); more after :func:`expand_input` (RGB, then depth, ...).
        dilation: 1, or the factor by which :func:`dilate_to_stride` rarefied the last stages.
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
        # Skips refine in 2x steps from stride 32 (score_pool4 at 16, score_pool3 at 8, one more
        # at 4), so a stride needs every stage from 32 down to it; 2 would need a pool1 skip.
        allowed = [s for s in _STRIDES if all(t in taps for t in _STRIDES if t >= s)]
        if type(stride) is not int or stride not in allowed:  # not 8.0, not True
            names = ", ".join(f"FCN-{s}s" for s in allowed)
            raise ValueError(
                f"output stride {stride!r} is not available: this backbone's stages end at "
                f"strides {sorted(taps)}, so it takes strides {allowed} ({names}); choose one "
                "of those"
            )
        self.align, self.stride, self.n_classes = align, stride, n_classes
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.bgr = bool(bgr)  # like mean and std, not saved: the backbone's spec sets it
        self.dilation = 1  # set by dilate_to_stride

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
        # negative: the map starts inside the reference, padded at run time; 'same' nets whose
        # pools mix even and odd windows can be off by a fraction: rounded
        caffe = self.align == "caffe"
        try:
            return rf.crop_offset(source, reference, allow_padding=True, rounding=not caffe)
        except ValueError as e:
            if not caffe:
                raise
            raise ValueError(
                f"with align='caffe' this backbone's maps are out of register ({e}); the "
                "original code asserted whole offsets: use align='same', or a coarser stride"
            ) from e

    @property
    def in_channels(self) -> int:
        """Input channels the net takes: 3 (RGB), or more after :func:`expand_input`."""
        return self.mean.shape[1]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, H, W)``, RGB in [0, 1] (then any extra channels) -> what the
        backbone's weights expect: RGB reversed to BGR if ``bgr``, then ``(x - mean) / std``.
        Extra channels (depth) have mean 0 and std 1: they reach conv1 as given.

        Integer images (uint8 0-255) are refused: mean and std would be cast to integers,
        silently wrong (all-NaN logits for ImageNet's mean and std). Float images of another
        precision than the weights are converted to the weights' dtype, so a float16 or float64
        batch runs on float32 weights (under ``torch.autocast`` the convolutions still run in
        the autocast dtype); ``net.double()`` computes in float64 throughout."""
        if not x.is_floating_point():
            raise ValueError(
                f"expected float images, RGB in [0, 1], got dtype {x.dtype}; convert uint8 "
                "images with x.float() / 255 (other integer types: divide by their maximum), or "
                "torchvision.transforms.v2.ToDtype(torch.float32, scale=True)"
            )
        x = x.to(self.score_fr.weight.dtype)  # a no-op when the dtypes already agree
        if self.bgr:
            x = torch.cat([x[:, :3].flip(1), x[:, 3:]], dim=1)  # RGB -> BGR, extras stay
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def score_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate map by its paper name, for inspection: ``pool3``.. ``pool5``,
        ``score_fr``, ``upscore2``, ``score_pool4``, ``fuse_pool4``, ..., and the final
        ``score`` ``(N, n_classes, H, W)``."""
        c = self.in_channels
        if x.dim() != 4 or x.shape[1] != c:
            what = "" if c == 3 else f" (RGB, then {c - 3} extra channel(s) such as depth)"
            hint = (
                "convert grey/RGBA images to RGB (for RGB-D input, see expand_input)"
                if c == 3
                else "stack the extra channel(s) after RGB: torch.cat([rgb, depth], dim=1)"
            )
            raise ValueError(
                f"expected images (N, {c}, H, W){what}, got shape {tuple(x.shape)}; add a "
                f"batch dimension with x.unsqueeze(0) for one image, and {hint}"
            )
        h, w = x.shape[-2:]
        maps: dict[str, torch.Tensor] = {}
        x = self.normalize(x)
        for name, stage in self.features.items():
            x = maps[name] = stage(x)  # (N, C_s, ~H/s, ~W/s)
        # (N, n_classes, ~H/32, ~W/32); ~H/8 after dilate_to_stride(net, 8)
        score = maps["score_fr"] = self.score_fr(self.fc(x))
        for s in self.skip_strides:
            pool = _POOL_NAME[s]
            up = maps[self._up_name(s)] = getattr(self, self._up_name(s))(score)  # 2x finer
            skip = maps[f"score_{pool}"] = getattr(self, f"score_{pool}")(maps[pool])
            score = maps[f"fuse_{pool}"] = _fuse(up, skip, self.crop_offsets[f"score_{pool}"])
        out = maps[self.final_name] = getattr(self, self.final_name)(score)  # >= (H, W)
        maps["score"] = _crop(out, self.crop_offsets[self.final_name], h, w)  # (N, C, H, W)
        return maps

    def fusion_stages(self) -> list[str]:
        """The names :meth:`score_maps` gives the class-score maps between the last layer and
        the final upsampling, coarse to fine: ``score_fr``, then for each skip the 2x upsampled
        scores, the skip's own scores and their sum (FCN-8s: ``score_fr, upscore2,
        score_pool4, fuse_pool4, upscore_pool4, score_pool3, fuse_pool3``)."""
        names = ["score_fr"]
        for s in self.skip_strides:
            pool = _POOL_NAME[s]
            names += [self._up_name(s), f"score_{pool}", f"fuse_{pool}"]
        return names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes, H, W)`` for images ``(N, in_channels, H, W)`` in [0, 1]."""
        return self.score_maps(x)["score"]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _channels_after(stages: list[nn.Sequential]) -> int:
    """Channels leaving the last of ``stages`` (a stage may hold only pooling, as in AlexNet)."""
    return _out_channels(nn.Sequential(*[m for stage in stages for m in stage]))


def _fuse(up: torch.Tensor, skip: torch.Tensor, offset: int) -> torch.Tensor:
    """``up + skip`` in up's frame: skip cut at ``offset`` (or, if negative, zero-padded in
    front), then both cut at the end to their overlap. The result keeps up's origin.

    Each map is cut to the other's size (a slice past the end stops at the end), not to a
    ``min`` of the two: a traced graph (:func:`fcnlib.export.export_onnx`) then keeps the cut
    as a computation on the input's size rather than the number it had on the example input.
    """
    skip = skip[..., offset:, offset:] if offset >= 0 else F.pad(skip, (-offset, 0, -offset, 0))
    return up[..., : skip.shape[-2], : skip.shape[-1]] + skip[..., : up.shape[-2], : up.shape[-1]]


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
            Caffe VGG16 the paper used) or the lab-bench pre-training (lab backbones: shipped
            with fcnlib for ``"tiny_vgg"``, trained on first use and cached for the others);
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
            f"init_from starts a finer net from a coarser one: got strides {finer.stride} "
            f"(the net to start) and {coarser.stride} (the trained one); staged training goes "
            "32 -> 16 -> 8"
        )
    for what in ("n_classes", "align"):
        if getattr(finer, what) != getattr(coarser, what):
            raise ValueError(
                f"both nets need the same {what}: got {getattr(finer, what)!r} (the net to "
                f"start) and {getattr(coarser, what)!r} (the trained one)"
            )
    if finer.in_channels != coarser.in_channels:
        raise ValueError(
            f"both nets need the same input channels: got {finer.in_channels} (finer) and "
            f"{coarser.in_channels} (coarser), so their conv1 weights differ in shape; expand "
            f"the RGB one with expand_input(net, {max(finer.in_channels, coarser.in_channels)}) "
            "first"
        )
    if finer.bgr != coarser.bgr or not all(
        torch.equal(getattr(finer, b).cpu(), getattr(coarser, b).cpu()) for b in ("mean", "std")
    ):
        raise ValueError(
            "both nets need the same input normalisation (mean, std, bgr): their weights were "
            "trained on differently normalised inputs; build both on the same backbone"
        )
    own = finer.state_dict()
    # Names are shared on purpose (features.*, fc.*, score_fr, score_pool4, upscore2, ...); the
    # coarser net's final upsampling is named after its stride and so never matches.
    differ = [n for n, v in coarser.state_dict().items() if n in own and own[n].shape != v.shape]
    if differ:
        name = differ[0]
        raise ValueError(
            f"the nets have different layers: {len(differ)} of the coarser net's "
            f"{len(coarser.state_dict())} tensors have another shape in the finer one (e.g. "
            f"{name}: {tuple(coarser.state_dict()[name].shape)} and {tuple(own[name].shape)}); "
            "build the finer net on the coarser one's backbone"
        )
    for name, value in coarser.state_dict().items():
        if name in own:
            own[name].copy_(value)
    return finer


# ----------------------------------------------------------------------------------------------
# RGB-D: early fusion (more input channels) and late fusion (two nets, summed scores)
# ----------------------------------------------------------------------------------------------


def expand_input(model: FCN, channels: int = 4, *, init: str = "mean") -> FCN:
    """Early fusion: a copy of ``model`` whose conv1 takes ``channels`` input channels.

    The paper's RGB-D net on NYUDv2 (section 5): conv1 is widened to RGB + depth and the net is
    fine-tuned from the RGB one; it found this "early fusion" helps little. The new conv1's
    filters keep the old ones exactly on the old channels, and get for each new channel:

    * ``init="mean"``: the mean of the filter's RGB weights, so a depth map drives conv1 as a
      grey image of a third of its intensity would (the usual way to transfer RGB filters).
    * ``init="zeros"``: zero, so the expanded net starts out computing exactly ``model``'s
      output; the depth filters then grow from zero in training.

    The new channels are normalised with mean 0 and std 1: they reach conv1 as given, and BGR
    weights reverse only the RGB channels. Scale depth yourself (e.g. metres / 10, to about
    [0, 1]). ``model`` is not modified.

    Args:
        model: an :class:`FCN` taking 3 channels (or fewer than ``channels``).
        channels: the input channels of the result, RGB first: 4 for RGB-D.
        init: ``"mean"`` or ``"zeros"``, for the new channels' filters.

    Returns:
        :class:`FCN` mapping ``(N, channels, H, W)`` (RGB in [0, 1], then the extra channels)
        to logits ``(N, n_classes, H, W)``.

    >>> rgbd = expand_input(fcn32s("tiny_vgg", n_classes=5), 4)
    >>> rgbd(torch.rand(1, 4, 40, 40)).shape
    torch.Size([1, 5, 40, 40])
    """
    if init not in ("mean", "zeros"):
        raise ValueError(f"init must be 'mean' or 'zeros', got {init!r}")
    old = model.in_channels
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < old:
        raise ValueError(
            f"channels must be an int >= the {old} the net already takes (RGB first, then "
            f"the extra channels), got {channels!r}"
        )
    if any(isinstance(m, GoogLeNetInput) for m in model.features.modules()):
        raise ValueError(
            "this GoogLeNet rescales its 3 input channels before conv1 (transform_input), which "
            "has no rule for a depth channel; early fusion needs a VGG, AlexNet or lab backbone"
        )
    net = copy.deepcopy(model)
    name, conv = next((n, m) for n, m in net.features.named_modules() if isinstance(m, nn.Conv2d))
    if conv.groups != 1:
        raise ValueError(f"conv1 ({name}) is grouped (groups={conv.groups}); expected groups=1")
    w = conv.weight.detach()  # (out, old, k, k)
    extra = w[:, :3].mean(1, keepdim=True) if init == "mean" else torch.zeros_like(w[:, :1])
    new = nn.Conv2d(
        channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
        device=w.device, dtype=w.dtype,
    )  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(torch.cat([w, extra.expand(-1, channels - old, -1, -1)], dim=1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.requires_grad_(conv.weight.requires_grad)
    parent, _, child = name.rpartition(".")
    setattr(net.features.get_submodule(parent), child, new)
    pad = channels - old  # the extra channels pass through the normalisation unchanged
    net.mean = torch.cat([net.mean, net.mean.new_zeros(1, pad, 1, 1)], dim=1)  # (1, C, 1, 1)
    net.std = torch.cat([net.std, net.std.new_ones(1, pad, 1, 1)], dim=1)
    return net


class LateFusion(nn.Module):
    """Late fusion: an RGB net and a depth net whose class scores are summed.

    The paper's RGB-HHA net on NYUDv2 (section 5): one FCN sees the RGB image, another the
    depth image (Gupta et al.'s HHA encoding, or raw depth), their predictions are summed at the
    final layer, and the two-stream net is trained end to end.

    ``forward`` takes ``(N, 3 + k, H, W)``: the first 3 channels (RGB in [0, 1]) go to ``rgb``,
    the other ``k`` to ``depth``: as they are if ``depth`` takes ``k`` channels, or, a single
    channel (``k = 1``), repeated to the channels it takes (a 3-channel net sees depth as a grey
    image). Returns ``rgb(x[:, :3]) + depth(x[:, 3:])``, logits ``(N, n_classes, H, W)``.

    >>> fused = LateFusion(fcn32s("tiny_vgg", n_classes=5), fcn32s("tiny_vgg", n_classes=5))
    >>> fused(torch.rand(2, 4, 40, 40)).shape  # RGB + depth
    torch.Size([2, 5, 40, 40])
    """

    def __init__(self, rgb: FCN, depth: FCN) -> None:
        super().__init__()
        if rgb.in_channels != 3:
            raise ValueError(
                f"the RGB net must take 3 channels, it takes {rgb.in_channels}; for a net that "
                "sees RGB-D at once (early fusion), use expand_input alone"
            )
        if rgb.n_classes != depth.n_classes:
            raise ValueError(
                f"both nets must score the same classes: got n_classes {rgb.n_classes} (rgb) "
                f"and {depth.n_classes} (depth)"
            )
        self.rgb, self.depth, self.n_classes = rgb, depth, rgb.n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        want = self.depth.in_channels
        if x.dim() != 4 or x.shape[1] < 4:
            raise ValueError(
                f"expected (N, 3 + k, H, W): RGB, then k >= 1 depth channel(s), got shape "
                f"{tuple(x.shape)}; stack them with torch.cat([rgb, depth], dim=1)"
            )
        rgb, other = x[:, :3], x[:, 3:]
        if other.shape[1] != want:
            if other.shape[1] != 1:
                raise ValueError(
                    f"the depth net takes {want} channel(s), got {other.shape[1]} after RGB; pass "
                    f"{want} (e.g. HHA), or 1 (depth, repeated to {want})"
                )
            other = other.expand(-1, want, -1, -1)  # (N, want, H, W): depth as a grey image
        return self.rgb(rgb) + self.depth(other)  # (N, n_classes, H, W)


# ----------------------------------------------------------------------------------------------
# Dilation: FCN-32s's head on a stride-8 trunk
# ----------------------------------------------------------------------------------------------


def _dilate_layer(name: str, layer: nn.Module, factor: int) -> tuple[nn.Module, int]:
    """One layer rarefied by ``factor`` (:func:`fcnlib.rarefy.rarefy_layer`), in place; returns
    it and the factor after it. Where a pad layer must go first, the pair replaces the layer at
    the same place, so that parameter names are kept."""
    stride = getattr(layer, "stride", 1)
    if not isinstance(layer, nn.ZeroPad2d | nn.ConstantPad2d) and len(set(_pair(stride))) > 1:
        raise ValueError(
            f"layer {name!r}: strides differ by axis {stride}; expected square strides"
        )
    pad, new, (after, _) = rarefy_layer(name, layer, (factor, factor), keep_names=True)
    return (new if pad is None else nn.Sequential(pad, new)), after


def _dilate_(module: nn.Module, factor: int) -> int:
    """Rarefy ``module``'s layers in place, in forward order; returns the factor after it."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Sequential) or type(child).__name__ == "BasicConv2d":
            factor = _dilate_(child, factor)  # a chain (GoogLeNet's BasicConv2d: conv, bn)
        elif rf.branches(child) is not None:
            for branch in rf.branches(child):  # parallel branches, all at the same scale
                if _dilate_(branch, factor) != factor:
                    raise ValueError(f"a branch of {name!r} downsamples; branches must not")
        else:
            new, factor = _dilate_layer(name, child, factor)
            if new is not child:
                setattr(module, name, new)
    return factor


def dilate_to_stride(model: FCN, output_stride: int = 8, *, learnable_final: bool = False) -> FCN:
    """FCN-32s's head on a dilated trunk of output stride ``output_stride`` (DeepLab-style).

    The pools (and strided layers) beyond ``output_stride`` keep their windows but take stride
    1 (padded so that sizes are kept), and every later convolution and pool, fc6 and fc7
    included, is rarefied (dilated) by the stride so removed before it: for VGG16 at stride 8,
    pool4 stride 1, conv5 and pool5 dilation 2, fc6 (7 x 7) dilation 4. This is the paper's filter
    rarefaction (section 3.2, :func:`fcnlib.upsample.rarefy`) applied to the last stages only:
    every unit sees the pixels it saw before, so receptive fields are unchanged, the weights
    keep their shapes (pretrained or trained FCN-32s weights stay usable, also through
    :func:`init_from`), and the stride-8 scores subsampled every 4th unit are FCN-32s's scores.
    One score layer (``score_fr``), no skips, and a bilinear upsampling by ``output_stride``
    (``upscore8``) bring them to the input size. ``model`` is not modified.

    Costs: the last stages run on 16x more positions (fc6 7 x 7 x 512 x 4096 included), and,
    as the paper notes for shift-and-stitch, the rarefied filters still see only every 4th unit
    below them: finer output, no finer features.

    Args:
        model: an FCN-32s (``stride=32``, no skips) with ``align="same"``.
        output_stride: a stride at which a stage of the backbone ends (8 or 16 for VGG).
        learnable_final: learn the final upsampling (default: fixed bilinear, as FCN-32s's).

    Returns:
        :class:`FCN` with ``stride == output_stride``, ``dilation == 32 // output_stride``,
        mapping ``(N, in_channels, H, W)`` to logits ``(N, n_classes, H, W)``.

    >>> net = dilate_to_stride(fcn32s("tiny_vgg", n_classes=5), 8)
    >>> net.score_maps(torch.rand(1, 3, 64, 96))["score_fr"].shape  # H/8, W/8
    torch.Size([1, 5, 8, 12])
    """
    if model.stride != 32 or model.skip_strides or model.dilation != 1:
        raise ValueError(
            f"dilate_to_stride takes an undilated FCN-32s, got a net of stride {model.stride} "
            f"(skips {model.skip_strides}, dilation {model.dilation}); the dilated trunk itself "
            "predicts at the finer stride, so start from fcn32s(...)"
        )
    if model.align != "same":
        raise ValueError(
            "dilate_to_stride supports align='same' only: align='caffe' pads conv1_1 by 100 and "
            "leaves fc6 unpadded, sized for stride 32; a dilated fc6 needs 4x that margin and "
            "new crops. Build the FCN-32s with align='same'"
        )
    strides = [s for s in model._stage_strides if s <= 32]
    if output_stride not in strides:
        raise ValueError(
            f"output stride {output_stride} is not available: this backbone's stages end at "
            f"strides {strides}; choose one of those"
        )
    net = copy.deepcopy(model)
    factor = 1
    for s, stage in zip(net._stage_strides, net.features.values(), strict=True):
        if s > output_stride:
            factor = _dilate_(stage, factor)  # pool4: stride 1; conv5: dilation 2; ...
    factor = _dilate_(net.fc, factor)  # fc6, fc7: dilation 32 / output_stride
    delattr(net, net.final_name)
    net.stride, net.dilation = output_stride, factor
    net.final_name = "upscore" if output_stride == 32 else f"upscore{output_stride}"
    up = net._upsample(output_stride, learnable_final)  # (N, C, n, n) -> (N, C, 8n, 8n)
    setattr(net, net.final_name, up.to(net.score_fr.weight.device, net.score_fr.weight.dtype))
    # The dilated units sit where FCN-32s's do (VGG: unit 0 centred on pixel 15.5, 8 apart), not
    # where a stride-8 map tiling the image would (3.5): the computed final crop is negative
    # (-12 for VGG), and the border it leaves is replicated.
    net.crop_offsets = net._compute_offsets()
    return net

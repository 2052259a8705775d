"""Filter rarefaction (the paper's section 3.2): a layer preceded by strides multiplying to
``f``, given stride 1 and its taps spread ``f`` apart (dilation ``f``), reads at input
resolution exactly the pixels its strided original read for the output cell there.

One implementation, :func:`rarefy_layer`, serves both uses of the idea in fcnlib:

* :func:`rarefy`: a whole net rarefied, the one pass that computes what shift-and-stitch
  (:func:`fcnlib.upsample.shift_and_stitch`) computes with ``f**2`` passes; :func:`exact_region`
  says where the two agree exactly (away from the border);
* :func:`fcnlib.models.dilate_to_stride`: FCN-32s's last stages rarefied in place, its weights
  and their names kept (DeepLab's dilated trunk).

>>> conv = nn.Conv2d(8, 5, 3, padding=1)
>>> pad, rarefied, after = rarefy_layer("conv", conv, (2, 2))
>>> pad, rarefied, after  # after a stride-2 pool: taps 2 apart, padding 2
(None, Conv2d(8, 5, kernel_size=(3, 3), stride=(1, 1), padding=(2, 2), dilation=(2, 2)), (2, 2))
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fcnlib import receptive_field as rf

__all__ = ["exact_region", "rarefy", "rarefy_layer"]


class _Geometry(NamedTuple):
    """How a layer reads its input, per axis (rows, columns): output ``v`` reads input
    ``stride * v - padding + dilation * t`` for ``0 <= t < kernel``; ``span`` is the dilated
    kernel's extent ``dilation * (kernel - 1) + 1``."""

    span: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _flat_layers(net: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    for name, layer in net.named_children():
        if isinstance(layer, nn.Sequential):
            yield from _flat_layers(layer, f"{prefix}{name}_")
        else:
            yield prefix + name, layer


def _geometry(name: str, layer: nn.Module) -> _Geometry | None:
    """The layer's geometry, None for a pointwise layer; errors for what rarefy cannot handle."""
    if rf.is_pointwise(layer):
        return None
    if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        raise TypeError(
            f"layer {name!r} ({type(layer).__name__}): rarefy does not know how it acts on space. "
            "It handles Conv2d, MaxPool2d, AvgPool2d and pointwise layers (activations, "
            "normalisation, dropout)."
        )
    if isinstance(layer.padding, str) or getattr(layer, "padding_mode", "zeros") != "zeros":
        raise ValueError(f"layer {name!r}: give padding as int(s) with zero padding mode")
    if getattr(layer, "ceil_mode", False) or getattr(layer, "divisor_override", None):
        raise ValueError(f"layer {name!r}: ceil_mode and divisor_override are not supported")
    if getattr(layer, "return_indices", False):
        raise ValueError(f"layer {name!r}: return_indices is not supported")
    kernel, stride = _pair(layer.kernel_size), _pair(layer.stride)
    padding, dilation = _pair(layer.padding), _pair(getattr(layer, "dilation", 1))
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    for k, s, p in zip(span, stride, padding, strict=True):
        # output size floor((n + 2p - k) / s) + 1 equals n / s, for n a multiple of s, iff this:
        if not k - s <= 2 * p <= k - 1:
            raise ValueError(
                f"layer {name!r} (kernel extent {k}, stride {s}, padding {p}) does not map a "
                f"size n (a multiple of {s}) to n / {s}, so its outputs do not sit on every "
                f"{s}-th pixel; give it a padding p with {k - s} <= 2p <= {k - 1}"
            )
    return _Geometry(span, stride, padding, dilation)


class _DilatedAvgPool2d(nn.Module):
    """AvgPool2d with dilated taps, which PyTorch's lacks: a depthwise constant convolution."""

    def __init__(
        self,
        kernel: tuple[int, int],
        dilation: tuple[int, int],
        pad: tuple[int, int, int, int],
        count_include_pad: bool,
    ) -> None:
        super().__init__()
        self.kernel, self.dilation, self.pad = kernel, dilation, pad  # pad as F.pad wants it
        self.count_include_pad = count_include_pad

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel}, dilation={self.dilation}, pad={self.pad}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = x.new_ones(x.shape[1], 1, *self.kernel)
        total = F.conv2d(F.pad(x, self.pad), ones, dilation=self.dilation, groups=x.shape[1])
        if self.count_include_pad:
            return total / (self.kernel[0] * self.kernel[1])
        inside = F.pad(torch.ones_like(x[:1, :1]), self.pad)  # 1 on the image, 0 on the padding
        return total / F.conv2d(inside, ones[:1], dilation=self.dilation)


def rarefy_layer(
    name: str, layer: nn.Module, factor: tuple[int, int], *, keep_names: bool = False
) -> tuple[nn.Module | None, nn.Module, tuple[int, int]]:
    """``layer``, preceded by strides multiplying to ``factor`` (rows, columns), rarefied in
    place: ``(pad, layer, factor after it)``.

    A convolution or pool gets stride 1, dilation ``factor`` times its own, and the padding
    that puts output ``m``'s taps on input ``m - factor * p + factor * dilation * t``: the pixels
    the strided original read for the cell at ``m``. A strided layer keeps the size ``n -> n``,
    with ``factor * (dilation * (k - 1) - p)`` padding after it. Where that differs from the
    padding before, or exceeds what PyTorch lets a max pool pad (half its window), ``pad`` is
    an explicit pad layer to run first (zeros before a convolution, -inf before a max pool;
    else None). An average pool becomes a depthwise constant convolution (PyTorch's cannot be
    dilated); a pad layer scales its padding; pointwise layers stay as they are.

    ``keep_names``: refuse a convolution that would need a pad layer in front (an even
    strided kernel), for a caller that keeps parameter names
    (:func:`fcnlib.models.dilate_to_stride`).
    """
    fy, fx = factor
    if isinstance(layer, nn.ZeroPad2d | nn.ConstantPad2d):  # e.g. fc6's 'same' padding
        left, right, top, bottom = layer.padding
        layer.padding = (fx * left, fx * right, fy * top, fy * bottom)
        return None, layer, factor
    if rf.is_pointwise(layer):
        return None, layer, factor
    if not isinstance(layer, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        raise TypeError(
            f"layer {name!r} ({type(layer).__name__}): rarefaction does not know how it acts on "
            "space; it handles Conv2d, MaxPool2d, AvgPool2d, zero padding and pointwise layers"
        )
    if isinstance(layer.padding, str):
        raise ValueError(f"layer {name!r}: give its padding as int(s), not {layer.padding!r}")
    if getattr(layer, "ceil_mode", False) and isinstance(layer, nn.AvgPool2d):
        raise ValueError(f"layer {name!r}: an average pool in ceil mode is not supported")
    k, s = _pair(layer.kernel_size), _pair(layer.stride)
    p, d = _pair(layer.padding), _pair(getattr(layer, "dilation", 1))
    if isinstance(layer, nn.AvgPool2d) and k == (1, 1) and s == (1, 1):
        return None, layer, factor  # reads one pixel: nothing to spread
    before = (fy * p[0], fx * p[1])
    after = tuple(
        b if si == 1 else f * (di * (ki - 1) - pi)
        for b, si, f, di, ki, pi in zip(before, s, factor, d, k, p, strict=True)
    )
    dilation = (fy * d[0], fx * d[1])
    pads = (before[1], after[1], before[0], after[0])  # F.pad's order: left, right, top, bottom
    out = (factor[0] * s[0], factor[1] * s[1])
    if isinstance(layer, nn.AvgPool2d):
        return None, _DilatedAvgPool2d(k, dilation, pads, layer.count_include_pad), out
    layer.stride, layer.dilation = (1, 1), dilation
    # PyTorch's max pool pads at most half its (undilated) window
    fits = isinstance(layer, nn.Conv2d) or all(
        b <= ki // 2 for b, ki in zip(before, k, strict=True)
    )
    if before == after and fits:
        layer.padding = before
        return None, layer, out
    if isinstance(layer, nn.Conv2d) and keep_names:
        raise ValueError(
            f"layer {name!r}: a strided convolution with an even kernel would need a pad layer "
            "in front, which would rename its parameters; dilate_to_stride supports strided "
            "max pools and odd strided convolutions"
        )
    layer.padding = (0, 0)
    fill = -math.inf if isinstance(layer, nn.MaxPool2d) else 0.0
    return nn.ConstantPad2d(pads, fill), layer, out


def rarefy(net: nn.Sequential) -> nn.Sequential:
    """The net shift-and-stitch computes, as one pass at input resolution: ``(N, K, H, W)``.

    Every layer gets stride 1; a layer preceded by strides multiplying to ``S`` gets dilation and
    padding times ``S``, so output pixel ``m`` reads input pixels ``m - S*p + S*dilation*t``: those
    the coarse net reads for the output cell at ``m``. Layers with even kernels (a 2x2 pool) need
    more padding after than before; an explicit pad layer (-inf before a max pool) supplies it.
    The layers are deep copies: same weights, trained separately.

    Args:
        net: nn.Sequential (nested allowed) of Conv2d, MaxPool2d, AvgPool2d and pointwise
            layers, each mapping size ``n`` to ``n / stride`` (see :func:`exact_region`).

    >>> conv = nn.Conv2d(8, 5, 3, padding=1)
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), conv)
    >>> rarefy(net)[-1]  # after the pool, the conv reads every second pixel
    Conv2d(8, 5, kernel_size=(3, 3), stride=(1, 1), padding=(2, 2), dilation=(2, 2))
    """
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"rarefy takes an nn.Sequential, got {type(net).__name__}")
    scale = (1, 1)  # the stride accumulated before this layer, per axis
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for name, layer in _flat_layers(net):
        _geometry(name, layer)  # refuses what shift-and-stitch cannot match exactly
        pad, new, scale = rarefy_layer(name, copy.deepcopy(layer), scale)
        if pad is not None:
            layers[f"{name}_pad"] = pad
        layers[name] = new
    return nn.Sequential(layers)


def exact_region(net: nn.Sequential, size: tuple[int, int]) -> torch.Tensor:
    """Bool ``(H, W)``: where ``shift_and_stitch(net, x, f)`` equals ``rarefy(net)(x)`` exactly.

    ``H, W`` must be multiples of the output stride ``f``. Per axis, take output row ``m``, its
    phase ``d = m % f`` (the shift of the copy it comes from) and its receptive field, rows
    ``m - above .. m + below``. The row is exact if ``d == 0`` (that copy is the image itself), or
    if the receptive field lies in rows ``d .. H - 1``: the rows both passes hold as image. The
    shifted copy lost rows ``0 .. d-1`` and its layers pad there with zeros where the rarefied net
    reads the image; past row ``H - 1`` the rarefied net pads where the copy still holds (zero)
    image, which its biases make nonzero one layer up. A pixel is exact if its row and column are.
    For other sizes, pad ``x`` at the bottom/right to a multiple of ``f``, as shift-and-stitch does.

    The region is sufficient; for linear nets it is usually also necessary. It can be a pixel or
    so too small: at the bottom/right where the first layer's zero padding equals the copy's zero
    image, and where a first pool without padding never reads the lost rows. Outside it, max
    pooling and ReLU may also agree by chance.

    >>> net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2))
    >>> exact_region(net, (8, 8))[:, 0].int()  # rows 1 and 7: receptive field leaves rows 1..7
    tensor([1, 0, 1, 1, 1, 1, 1, 0], dtype=torch.int32)
    """
    geos = [g for name, layer in _flat_layers(net) if (g := _geometry(name, layer)) is not None]
    masks = []
    for axis, n in enumerate(size):
        f, above, below = 1, 0, 0
        for g in geos:  # the receptive field, grown layer by layer in input pixels
            above += f * g.padding[axis]
            below += f * (g.span[axis] - 1 - g.padding[axis])
            f *= g.stride[axis]
        if n % f:
            raise ValueError(
                f"size {tuple(size)} is not a multiple of the output stride {f} along axis "
                f"{axis}; pad the input at the bottom/right to a multiple, then crop"
            )
        m = torch.arange(n)
        phase = m % f
        masks.append((phase == 0) | ((m - above >= phase) & (m + below <= n - 1)))
    return masks[0][:, None] & masks[1][None, :]

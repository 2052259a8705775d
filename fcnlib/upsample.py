"""Dense output from a coarse net: backwards strided convolution, or shift-and-stitch.

A net of output stride ``f`` (FCN-32s: f = 32) predicts one score vector per ``f x f`` block of
input pixels. Section 3 of the paper weighs two ways to get a prediction for every pixel.

**Upsampling is backwards strided convolution.** A transposed convolution with stride ``f`` (a
"deconvolution": a convolution with input stride 1/f) whose kernel is :func:`bilinear_kernel`
interpolates the coarse scores. FCN initialises its ``upscore`` layers so and keeps the last one
fixed (:class:`BilinearUpsample`). With ``upsample_params(f)`` it maps ``n -> n * f``, and output
row ``o`` mixes input rows ``i`` with weights ``max(0, 1 - |s - i|)``, ``s = (o + 0.5) / f - 0.5``:
the weights of ``F.interpolate(..., mode="bilinear", align_corners=False)``. The two agree exactly
where ``0 <= s <= n - 1``, that is for ``f // 2 <= o <= n * f - 1 - f // 2``. In the ``f // 2``
rows nearer each border ``s`` lies outside the image: ``interpolate`` clamps it to the edge row,
while the deconvolution meets a zero there, and gives the edge value times ``1 - |s|`` (times
``1 - (s - n + 1)`` at the bottom). In one line, everywhere:
``deconv(x) == interpolate(x) * deconv(ones)``.

**Shift-and-stitch** (:func:`shift_and_stitch`) runs the net on ``f**2`` shifted copies of the
input and interlaces the outputs: exact dense predictions for ``f**2`` times the work
(:func:`flops`, :func:`compare_costs`). It computes what :func:`rarefy` computes in one pass: the
net with every stride set to 1 and every later filter dilated ("rarefied") by the stride
accumulated before it, so its taps still land on the pixels the coarse net would have read. The
receptive fields stay, but the filters still see only every ``f``-th pixel below them, so nothing
finer is learned: the paper's tradeoff, and why FCN prefers learned upsampling. The identity is
exact away from the image border; :func:`exact_region` says precisely where.

>>> BilinearUpsample(21, 32)(torch.rand(1, 21, 16, 16)).shape  # FCN-32s' fixed upscore
torch.Size([1, 21, 512, 512])
"""

from __future__ import annotations

import copy
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BilinearUpsample",
    "bilinear_kernel",
    "bilinear_weight",
    "compare_costs",
    "exact_region",
    "flops",
    "init_bilinear_",
    "rarefy",
    "shift_and_stitch",
    "upsample_params",
]


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


# ------------------------------------------------------------------------- bilinear upsampling


def bilinear_kernel(size: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``(size, size)`` bilinear interpolation kernel FCN initialises ``upscore`` layers with.

    With ``factor = (size + 1) // 2`` and centre ``c = factor - 1`` (odd size) or ``factor - 0.5``
    (even size): ``k[i, j] = (1 - |i - c| / factor) * (1 - |j - c| / factor)``, a tent of
    half-width ``factor``.

    >>> bilinear_kernel(4)[0]
    tensor([0.0625, 0.1875, 0.1875, 0.0625])
    """
    _check_count("size", size)
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    tent = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    return torch.outer(tent, tent).to(dtype)  # built in float64 so float64 callers get it exact


def bilinear_weight(
    in_channels: int, out_channels: int, size: int, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(in, out, size, size)`` ConvTranspose2d weight: the kernel on the channel diagonal.

    FCN's "surgery": channel ``c`` is interpolated from channel ``c`` alone; the zeros elsewhere
    leave room to learn cross-channel mixing.

    >>> bilinear_weight(3, 3, 4)[0, 1].abs().sum()
    tensor(0.)
    """
    if in_channels != out_channels:
        raise ValueError(
            f"bilinear upsampling maps every channel to itself, so in_channels must equal "
            f"out_channels; got {in_channels} and {out_channels}. To change the number of "
            f"channels, put a 1x1 convolution (a score layer) before the upsampling."
        )
    eye = torch.eye(in_channels, dtype=dtype)
    return eye[:, :, None, None] * bilinear_kernel(size, dtype=dtype)


def upsample_params(factor: int) -> tuple[int, int, int]:
    """``(kernel_size, stride, padding)`` of a transposed convolution mapping ``n -> n * factor``.

    The kernel ``2f - f % 2`` is the smallest tent that reaches both neighbouring input pixels; the
    padding ``ceil((f - 1) / 2)`` trims the overhang: ``(n - 1) f - 2 padding + kernel = n f``.

    >>> upsample_params(32)
    (64, 32, 16)
    """
    _check_count("factor", factor)
    return 2 * factor - factor % 2, factor, factor // 2  # factor // 2 == ceil((factor - 1) / 2)


def init_bilinear_(conv: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """Set a transposed convolution to bilinear interpolation, in place (bias zeroed); returns it.

    Works for ``groups=1`` (kernel on the channel diagonal) and for depthwise ``groups=channels``.

    >>> up = init_bilinear_(nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, bias=False))
    >>> up(torch.ones(1, 2, 3, 3))[0, 0, 2:4, 2:4]  # interior of a constant stays constant
    tensor([[1., 1.],
            [1., 1.]], grad_fn=<SliceBackward0>)
    """
    if not isinstance(conv, nn.ConvTranspose2d):
        raise TypeError(f"expected an nn.ConvTranspose2d, got {type(conv).__name__}")
    size, width = conv.kernel_size
    if size != width:
        raise ValueError(f"bilinear init needs a square kernel, got {conv.kernel_size}")
    channels, dtype = conv.in_channels, conv.weight.dtype  # built in that dtype: no rounding
    if conv.groups == 1:
        weight = bilinear_weight(channels, conv.out_channels, size, dtype=dtype)
    elif conv.groups == channels == conv.out_channels:
        weight = bilinear_kernel(size, dtype=dtype).expand(channels, 1, size, size)
    else:
        raise ValueError(
            f"bilinear init needs groups=1 or groups=in_channels=out_channels, got groups="
            f"{conv.groups} with {channels} -> {conv.out_channels} channels"
        )
    with torch.no_grad():
        conv.weight.copy_(weight)
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


class BilinearUpsample(nn.ConvTranspose2d):
    """Upsample ``(N, C, H, W) -> (N, C, H * factor, W * factor)`` by a bilinear deconvolution.

    Args:
        channels: ``C`` (FCN: the number of classes).
        factor: the upsampling factor ``f``, an int >= 1.
        learnable: False (FCN's final ``upscore``): frozen, and depthwise (``groups=C``, ``C``
            times less work). True: a full ``C x C`` kernel, bilinear on the diagonal, trained
            with the net, so it may learn to mix channels.
        bias: add a zero-initialised bias (FCN has none).
        init: ``"bilinear"``, or ``"random"`` (PyTorch's default init, learnable only) for the
            "learned from random" comparison.
        device, dtype: of the weights. Pass ``dtype=torch.float64`` for float64 work rather than
            calling ``.double()`` later: for factors other than powers of 2 the kernel's values
            (multiples of 1/f) would keep their float32 rounding.

    >>> up = BilinearUpsample(3, 2)
    >>> up(torch.rand(1, 3, 5, 7)).shape, up.weight.shape, up.weight.requires_grad
    (torch.Size([1, 3, 10, 14]), torch.Size([3, 1, 4, 4]), False)
    """

    def __init__(
        self,
        channels: int,
        factor: int,
        *,
        learnable: bool = False,
        bias: bool = False,
        init: Literal["bilinear", "random"] = "bilinear",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_count("channels", channels)
        if init not in ("bilinear", "random"):
            raise ValueError(f"init must be 'bilinear' or 'random', got {init!r}")
        if init == "random" and not learnable:
            raise ValueError("a frozen random upsampling never learns; pass learnable=True")
        kernel, stride, padding = upsample_params(factor)
        groups = 1 if learnable else channels
        super().__init__(
            channels, channels, kernel, stride, padding, groups=groups, bias=bias,
            device=device, dtype=dtype,
        )  # fmt: skip
        self.factor = factor
        if init == "bilinear":
            init_bilinear_(self)
        self.requires_grad_(learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected scores of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}; "
                f"the upsampling was built for {self.in_channels} channels"
            )
        return super().forward(x)


# --------------------------------------------------------------------------- shift-and-stitch


def _pad_to_multiple(x: torch.Tensor, f: int, extra: int = 0) -> torch.Tensor:
    """Zeros at the bottom and right: up to a multiple of ``f``, then ``extra`` more."""
    return F.pad(x, (0, -x.shape[-1] % f + extra, 0, -x.shape[-2] % f + extra))


def shift_and_stitch(
    net: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    f: int,
    *,
    batch_shifts: bool = True,
) -> torch.Tensor:
    """Exact dense output ``(N, K, H, W)`` from a net of output stride ``f``, in ``f**2`` passes.

    Copy ``(dy, dx)`` of ``x`` is shifted up by ``dy`` and left by ``dx`` (``copy[..., i, j] =
    x[..., i + dy, j + dx]``, zeros beyond the image) and its output ``(i, j)`` is put at pixel
    ``(i*f + dy, j*f + dx)``. ``x`` is first padded with zeros at the bottom and right to a multiple
    of ``f``, and the result is cropped back to ``(H, W)``.

    The paper instead shifts the input right and down by ``(x, y)``, ``0 <= x, y < f``: the mirror
    image. Shifting right by ``x`` is shifting left by ``f - x`` and moving the output one cell, so
    both run the net at the same ``f**2`` sampling phases and agree except within reach of the
    border (they fill opposite sides with zeros). Shifting up/left puts no offset in the
    interlacing, copy ``(0, 0)`` is the plain net, and the interlacing is ``F.pixel_shuffle``.
    (The paper places each prediction at the centre of its receptive field; here pixel ``m`` gets
    the prediction the coarse net anchors at ``m``: a constant offset, zero for symmetric padding.)

    Args:
        net: maps ``(B, C, h, w)`` with ``h, w`` multiples of ``f`` to ``(B, K, h/f, w/f)``; put
            it in eval mode (dropout and batch statistics would differ between the copies).
        x: ``(N, C, H, W)``, any ``H, W``.
        f: the net's output stride, an int >= 1.
        batch_shifts: run the ``f**2`` copies as one batch of ``f**2 * N`` (fast); False loops
            over them (``f**2`` times less memory).

    >>> x = torch.rand(1, 1, 10, 13)
    >>> torch.equal(shift_and_stitch(nn.AvgPool2d(1, stride=4), x, 4), x)  # subsampling undone
    True
    """
    _check_count("f", f)
    if x.dim() != 4:
        raise ValueError(f"expected x of shape (N, C, H, W), got {tuple(x.shape)}")
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    hp, wp = h + -h % f, w + -w % f  # every copy has this size, so the copies can share a batch
    padded = _pad_to_multiple(x, f, extra=f - 1)  # room for the largest shift
    copies = [padded[..., dy : dy + hp, dx : dx + wp] for dy in range(f) for dx in range(f)]
    outs = net(torch.cat(copies)).split(n) if batch_shifts else [net(c) for c in copies]
    if outs[0].dim() != 4 or outs[0].shape[-2:] != (hp // f, wp // f):
        raise ValueError(
            f"net maps a {hp}x{wp} input to {tuple(outs[0].shape)}, but shift-and-stitch with "
            f"f={f} needs (N, K, {hp // f}, {wp // f}): an output stride of exactly f. Pass the "
            f"product of the net's strides as f, and pad its layers to keep sizes n -> n/stride."
        )
    stacked = torch.stack(outs, dim=2)  # (N, K, f*f, hp/f, wp/f); copy (dy, dx) at dy*f + dx
    # pixel_shuffle puts channel k*f*f + dy*f + dx, cell (i, j) at (i*f + dy, j*f + dx)
    return F.pixel_shuffle(stacked.flatten(1, 2), f)[..., :h, :w]


# --------------------------------------------------------------------------------- rarefaction

_POINTWISE = (
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.BatchNorm2d,
)  # fmt: skip


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
    if isinstance(layer, _POINTWISE):
        return None
    if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        known = ", ".join(t.__name__ for t in _POINTWISE)
        raise TypeError(
            f"layer {name!r} ({type(layer).__name__}): rarefy does not know how it acts on space. "
            f"It handles Conv2d, MaxPool2d, AvgPool2d and the pointwise {known}."
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
        geo = _geometry(name, layer)
        if geo is None:
            layers[name] = copy.deepcopy(layer)
            continue
        dilation = (scale[0] * geo.dilation[0], scale[1] * geo.dilation[1])
        before = (scale[0] * geo.padding[0], scale[1] * geo.padding[1])
        after = tuple(c * (k - 1 - p) for c, k, p in zip(scale, geo.span, geo.padding, strict=True))
        pad = (before[1], after[1], before[0], after[0])  # F.pad order: left, right, top, bottom
        if isinstance(layer, nn.AvgPool2d):
            kernel = _pair(layer.kernel_size)
            layers[name] = _DilatedAvgPool2d(kernel, dilation, pad, layer.count_include_pad)
        else:
            new = copy.deepcopy(layer)
            new.stride, new.dilation, new.padding = (1, 1), dilation, before
            if before != after:
                fill = -math.inf if isinstance(layer, nn.MaxPool2d) else 0.0
                layers[f"{name}_pad"] = nn.ConstantPad2d(pad, fill)
                new.padding = (0, 0)
            layers[name] = new
        scale = (scale[0] * geo.stride[0], scale[1] * geo.stride[1])
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


# ---------------------------------------------------------------------------------------- cost


def flops(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> int:
    """FLOPs of one call ``fn(x)`` as PyTorch's FlopCounterMode counts them.

    Convolutions and matrix products only (a multiply-add is 2); pooling and pointwise ops are free.

    >>> flops(nn.Conv2d(3, 8, 3, padding=1), torch.rand(1, 3, 10, 10))  # 2 * 8*3*3*3 * 10*10
    43200
    """
    from torch.utils.flop_counter import FlopCounterMode  # imports triton, where it is installed

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(x)
    return counter.get_total_flops()


def _best_seconds(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, repeats: int) -> float:
    def sync() -> None:  # CUDA runs asynchronously: wait for it before reading the clock
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    best = math.inf
    with torch.inference_mode():
        fn(x)  # warm-up: lazy initialisation, cuDNN's algorithm search
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            fn(x)
            sync()
            best = min(best, time.perf_counter() - start)
    return best


def compare_costs(net: nn.Module, x: torch.Tensor, f: int, *, repeats: int = 3) -> dict[str, float]:
    """Cost of shift-and-stitch versus one coarse pass followed by fixed bilinear upsampling.

    Returns a dict with ``shift_and_stitch_flops``, ``coarse_flops`` (one pass of ``net``),
    ``bilinear_flops`` (the :class:`BilinearUpsample` after it), ``flop_ratio`` (shift-and-stitch
    over coarse + bilinear) and wall times in seconds, best of ``repeats``:
    ``shift_and_stitch_seconds``, ``coarse_bilinear_seconds``, ``time_ratio``.
    ``shift_and_stitch_flops == f**2 * coarse_flops``: the ``f**2`` growth.
    """
    h, w = x.shape[-2:]
    padded = _pad_to_multiple(x, f)  # both ways run the net on this size
    with torch.no_grad():
        scores = net(padded)  # (N, K, H/f, W/f)
    up = BilinearUpsample(scores.shape[1], f, device=scores.device, dtype=scores.dtype)

    def stitched(t: torch.Tensor) -> torch.Tensor:
        return shift_and_stitch(net, t, f)

    def upsampled(t: torch.Tensor) -> torch.Tensor:
        return up(net(_pad_to_multiple(t, f)))[..., :h, :w]

    costs: dict[str, float] = {
        "shift_and_stitch_flops": flops(stitched, x),
        "coarse_flops": flops(net, padded),
        "bilinear_flops": flops(up, scores),
    }
    costs["flop_ratio"] = costs["shift_and_stitch_flops"] / (
        costs["coarse_flops"] + costs["bilinear_flops"]
    )
    costs["shift_and_stitch_seconds"] = _best_seconds(stitched, x, repeats)
    costs["coarse_bilinear_seconds"] = _best_seconds(upsampled, x, repeats)
    costs["time_ratio"] = costs["shift_and_stitch_seconds"] / costs["coarse_bilinear_seconds"]
    return costs

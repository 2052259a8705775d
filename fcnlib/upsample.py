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

import math
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from fcnlib.rarefy import exact_region, rarefy  # re-exported: the chapters import them here

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
    "stitch_sources",
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


def stitch_sources(f: int, size: tuple[int, int]) -> torch.Tensor:
    """For each pixel ``(p, q)`` of a dense ``(H, W)`` output of :func:`shift_and_stitch`, the
    copy and cell it comes from: ``(H, W, 4)`` int64 holding ``(dy, dx, i, j)``.

    Cell ``(i, j)`` of copy ``(dy, dx)`` (the input shifted up by ``dy``, left by ``dx``) lands
    at pixel ``(f i + dy, f j + dx)``, so ``p = f i + dy`` and ``q = f j + dx``.

    >>> stitch_sources(2, (4, 4))[1, 3].tolist()  # pixel (1, 3): copy (1, 1), cell (0, 1)
    [1, 1, 0, 1]
    """
    _check_count("f", f)
    p, q = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    return torch.stack([p % f, q % f, p // f, q // f], dim=-1)


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

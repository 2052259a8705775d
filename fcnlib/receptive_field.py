"""Receptive fields: how much of the input an output unit sees, how far apart units are, and where.

A layer with kernel ``k`` and stride ``s`` computes ``y_ij = f_ks({x_{si+di, sj+dj}})``, and the
paper's layer algebra says a stack of them is again such a filter (:func:`compose`):
``f_ks o g_k's' = (f o g)_{k' + (k-1)s', s s'}``. With padding ``p`` and dilation ``d`` (effective
kernel ``k_eff = d(k-1) + 1``), three numbers describe a layer's output along one axis, in input
pixels, with input pixel ``i`` at coordinate ``i``:

- ``size``, the receptive field:         ``size_out = size_in + (k_eff - 1) * jump_in``
- ``stride``, the jump between neighbouring output units:   ``jump_out = jump_in * s``
- ``offset``, the centre of output unit 0's field:
  ``offset_out = offset_in + ((k_eff - 1)/2 - p) * jump_in``

Output unit ``j`` is then centred on input coordinate ``offset + j * stride``. Pooling with
``ceil_mode=True`` only adds a partial window at the far border: it changes output sizes, never
these three numbers.

A transposed convolution ("deconvolution", upsampling by ``s``) runs the geometry backwards.
Input unit ``i`` writes to outputs ``o = s*i - p + t`` for taps ``t`` in ``0 .. k_eff - 1``, so
output ``o`` reads the integers ``i`` in ``[(o + p - k_eff + 1)/s, (o + p)/s]``, an interval of
length ``(k_eff - 1)/s``. We place the unit at its centre ``(o + p - (k_eff - 1)/2)/s`` (for a
bilinear kernel that is the weighted centre, the ``align_corners=False`` convention), so
``jump_out = jump_in / s`` and ``offset_out = offset_in + (p - (k_eff - 1)/2) / s * jump_in``.
The interval holds at most ``floor((k_eff - 1)/s) + 1`` inputs, hence
``size_out = size_in + floor((k_eff - 1)/s) * jump_in``: exact for the best-aligned units; the
other ``s - 1`` phases may see one input fewer (and dilated taps may skip some).

:class:`CoordMap` states the same geometry as a line ``y = scale * x + shift`` from input
coordinates to a blob's coordinates (the idea of Caffe's ``coord_map`` in the official FCN code)
and :func:`crop_offset` reads crop offsets off it: FCN-32s pads conv1_1 by 100 so that every input
size gives enough output, then crops the upsampled scores at 19 to realign them with the input.

A parallel block -- torchvision's ``Inception``, or any module with a ``branches``
``nn.ModuleList`` whose branches all read its input -- counts as one layer: its branches must put
each output unit at the same place, and the block sees as far as its widest branch.

The theoretical field is an upper bound. :func:`empirical_receptive_field` measures which input
pixels reach one output unit through gradients, and :func:`effective_radius` shows that most of
the gradient sits in a much smaller central *effective* field (Luo et al., 2016).

>>> rf = receptive_field(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)))
>>> [(r.kind, r.size, r.stride, r.offset) for r in rf]
[('conv', 3.0, 1.0, 0.0), ('maxpool', 4.0, 2.0, 0.5)]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import torch
from torch import nn

from fcnlib.modes import eval_mode

__all__ = [
    "CoordMap", "EmpiricalRF", "LayerRF", "branches", "chain_kernel_stride", "compose", "coord_map",
    "crop_offset", "effective_radius", "empirical_receptive_field", "is_pointwise",
    "receptive_field",
]  # fmt: skip

# Layers that act on each pixel separately. Instance/group norm statistics span the whole map,
# which receptive-field arithmetic (like BatchNorm at training time) deliberately ignores.
_POINTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Softplus, nn.Softmax2d, nn.BatchNorm2d, nn.SyncBatchNorm, nn.InstanceNorm2d, nn.GroupNorm,
    nn.LocalResponseNorm, nn.CrossMapLRN2d, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)  # fmt: skip
_PADS = (nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.CircularPad2d)


@dataclass(frozen=True)
class LayerRF:
    """Geometry of one layer's output along one axis, in input pixels (see the module doc).

    ``name``: qualified module name; ``kind``: "conv", "deconv", "maxpool", "avgpool", "pad" or
    "branches" (a parallel block such as an inception module, counted by its widest branch);
    ``size``: receptive-field size; ``stride``: jump between neighbouring output units (< 1 after
    upsampling); ``offset``: input coordinate of the centre of output unit 0's field.
    """

    name: str
    kind: str
    size: float
    stride: float
    offset: float


@dataclass(frozen=True)
class _Op:
    name: str
    kind: str
    kernel: int  # effective: dilation * (k - 1) + 1
    stride: int
    padding: int | Fraction  # a fraction only for a parallel block's equivalent layer


def branches(m: nn.Module) -> list[nn.Module] | None:
    """The parallel paths of a block whose branches all read the block's input, or None.

    Recognised: a module with a ``branches`` ``nn.ModuleList`` and torchvision's ``Inception``
    (``branch1`` .. ``branch4``, concatenated along channels).
    """
    if isinstance(getattr(m, "branches", None), nn.ModuleList):
        return list(m.branches)
    if type(m).__name__ == "Inception" and all(hasattr(m, f"branch{i}") for i in range(1, 5)):
        return [getattr(m, f"branch{i}") for i in range(1, 5)]
    return None


def _block_op(name: str, m: nn.Module, axis: int, pointwise: tuple[type, ...]) -> _Op:
    """One equivalent layer for a parallel block: the widest branch's field, shared geometry.

    Every branch is a chain with some (kernel K, stride S, coordinate map). The outputs can only
    be concatenated or summed unit by unit if all branches put unit ``j`` at the same place, i.e.
    share S and the map; the block then sees as far as its widest branch: ``K = max K_b``.
    """
    maps, kernels = [], []
    for i, branch in enumerate(branches(m) or []):
        ops = _ops(branch, axis, 33, None, pointwise)  # stride-1 branches accept any size
        if any(op.kind == "deconv" for op in ops):
            raise ValueError(f"branch {i} of {name!r} upsamples; parallel blocks must not")
        kernel, jump, cmap = 1, 1, CoordMap.identity()
        for op in ops:
            kernel += (op.kernel - 1) * jump
            jump *= op.stride
            cmap = cmap.then(_op_map(op))
        maps.append(cmap)
        kernels.append(kernel)
    if not maps:
        raise ValueError(f"parallel block {name!r} has no branches")
    if any(c != maps[0] for c in maps):
        raise ValueError(
            f"the branches of {name!r} are out of register (coordinate maps {maps}): their "
            "outputs do not line up unit by unit, so the block has no single receptive field"
        )
    stride = int(1 / maps[0].scale)
    kernel = max(kernels)
    padding = maps[0].shift * stride + Fraction(kernel - 1, 2)  # shift = (p - (K-1)/2) / S
    return _Op(name, "branches", kernel, stride, padding)


def _along(value: int | Sequence[int], axis: int) -> int:
    return value if isinstance(value, int) else value[axis]  # torch stores (h, w) tuples


def is_pointwise(m: nn.Module) -> bool:
    """True for a layer that acts on each pixel separately (activations, normalisation,
    dropout): it moves no coordinates."""
    return isinstance(m, _POINTWISE)


def _op(name: str, m: nn.Module, axis: int, pointwise: tuple[type, ...]) -> _Op | None:
    if isinstance(m, _POINTWISE + pointwise):
        return None
    if branches(m) is not None:
        return _block_op(name, m, axis, pointwise)
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)) and m.dim in (1, -3):  # over channels only
        return None
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, d = _along(m.kernel_size, axis), _along(getattr(m, "dilation", 1), axis)
        p = 0 if m.padding == "valid" else m.padding
        p = d * (k - 1) // 2 if p == "same" else _along(p, axis)  # torch pads the rest after
        kinds = {nn.ConvTranspose2d: "deconv", nn.MaxPool2d: "maxpool", nn.AvgPool2d: "avgpool"}
        kind = next((v for t, v in kinds.items() if isinstance(m, t)), "conv")
        return _Op(name, kind, d * (k - 1) + 1, _along(m.stride, axis), p)
    if isinstance(m, _PADS):
        left, _, top, _ = m.padding
        return _Op(name, "pad", 1, 1, left if axis == -1 else top)
    what = f"layer {name!r} ({type(m).__name__})"
    if isinstance(m, (nn.Linear, nn.Bilinear)):
        raise ValueError(
            f"{what} is fully connected: every output sees the whole input, so there is no "
            "receptive field to compose. Convolutionalize the classifier first (fc6 as a k x k "
            "Conv2d, the later layers as 1x1 convs) or pass only the convolutional part."
        )
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        raise ValueError(
            f"{what} has no fixed kernel or stride: both follow the input size. Replace it by a "
            "fixed nn.AvgPool2d / nn.MaxPool2d, or pass the network up to the layer before it."
        )
    raise ValueError(
        f"{what} is not a layer receptive_field knows (Conv2d, ConvTranspose2d, MaxPool2d, "
        "AvgPool2d, 2d padding, or pointwise: activations, normalisation, dropout). If it acts "
        f"on each pixel separately pass pointwise=({type(m).__name__},); otherwise pass the "
        "network without it."
    )


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f"input_size must be H or (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def _in_channels(module: nn.Module, given: int | None) -> int:
    if given is not None:
        return given
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return m.in_channels
    raise ValueError(
        f"cannot tell how many input channels {type(module).__name__} expects: it has no Conv2d; "
        "pass in_channels=C"
    )


def _like(module: nn.Module) -> dict:
    p = next(module.parameters(), None)
    return {} if p is None else {"device": p.device, "dtype": p.dtype}


def _units(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Leaves and parallel blocks (not their insides), with qualified names, in pre-order."""

    def walk(prefix: str, m: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        if branches(m) is not None or next(m.children(), None) is None:
            yield prefix or type(m).__name__, m
            return
        for n, child in m._modules.items():  # keeps repeats of a reused layer
            if child is not None:
                yield from walk(f"{prefix}.{n}" if prefix else n, child)

    return walk("", module)


def _containers(m: nn.Module) -> Iterator[nn.Module]:
    """Containers outside parallel blocks."""
    if branches(m) is not None or next(m.children(), None) is None:
        return
    yield m
    for child in m.children():
        yield from _containers(child)


def _layers(
    module: nn.Module, input_size: int | Sequence[int] | None, in_channels: int | None
) -> list[tuple[str, nn.Module]]:
    """(qualified name, layer) in forward order: static for Sequentials, traced otherwise.

    A parallel block (see :func:`branches`) counts as one layer.
    """
    if all(isinstance(m, nn.Sequential) for m in _containers(module)):
        return list(_units(module))  # pre-order over Sequentials is forward order
    if input_size is None:
        raise ValueError(
            f"{type(module).__name__} is not an nn.Sequential, so its layer order can only be "
            "found by running it: pass input_size=(H, W) (any size it accepts), or a list of its "
            "layers in forward order"
        )
    # Execution order of the layers is the chain -- only if the network is one. For a network
    # with branches (skips, residuals) pass the sub-network along the path you care about instead.
    units = list(_units(module))
    names = {id(m): n for n, m in reversed(units)}
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _in, _out: order.append(mod))
        for m in {id(m): m for _, m in units}.values()
    ]
    x = torch.zeros(1, _in_channels(module, in_channels), *_pair(input_size), **_like(module))
    try:
        with torch.no_grad(), eval_mode(module):
            module(x)
    except RuntimeError as e:
        raise RuntimeError(
            f"tracing {type(module).__name__} on a zero input of shape {tuple(x.shape)} failed; "
            "if the channel count is wrong pass in_channels=C, if the size is, another input_size"
        ) from e
    finally:
        for h in hooks:
            h.remove()
    return [(names[id(m)], m) for m in order]


def _ops(
    module: nn.Module | Sequence[nn.Module], axis: int, input_size, in_channels, pointwise
) -> list[_Op]:
    if axis not in (-1, -2):
        raise ValueError(f"axis must be -1 (width) or -2 (height), got {axis}")
    if not isinstance(module, nn.Module):
        module = nn.Sequential(*module)
    layers = _layers(module, input_size, in_channels)
    ops = [_op(n, m, axis, tuple(pointwise)) for n, m in layers]
    return [op for op in ops if op is not None]


def receptive_field(
    module: nn.Module | Sequence[nn.Module],
    *,
    axis: int = -1,
    input_size: int | Sequence[int] | None = None,
    in_channels: int | None = None,
    pointwise: Iterable[type] = (),
) -> list[LayerRF]:
    """Receptive field, jump and offset of every spatial layer of a chain, in forward order.

    Args:
        module: an ``nn.Sequential`` (nested ones are flattened), a list of modules, or any module
            whose forward is a chain: one forward pass with hooks then gives the layer order.
            Parallel blocks (inception modules) count as one layer; for a network whose
            skips leave and rejoin the chain (FCN-8s, ResNets) pass one path, e.g. up to pool4.
        axis: -1 for width, -2 for height (they differ for non-square kernels or strides).
        input_size: ``(H, W)`` of the zero input used to trace a non-Sequential module.
        in_channels: channels of that input; default: the first Conv2d's ``in_channels``.
        pointwise: extra module types that act on each pixel separately.

    Returns:
        one :class:`LayerRF` per conv / deconv / pool / pad layer; the last describes the output.
        Pointwise layers are skipped; an empty list means output unit ``i`` is input pixel ``i``.

    >>> vgg_pool1 = [nn.Conv2d(3, 64, 3, padding=100), nn.Conv2d(64, 64, 3, padding=1),
    ...              nn.MaxPool2d(2, 2, ceil_mode=True)]
    >>> receptive_field(vgg_pool1)[-1]
    LayerRF(name='2', kind='maxpool', size=6.0, stride=2.0, offset=-98.5)
    """
    ops = _ops(module, axis, input_size, in_channels, pointwise)
    size, jump, offset = Fraction(1), Fraction(1), Fraction(0)  # the input pixel itself
    records = []
    for op in ops:
        k, s, p = op.kernel, op.stride, op.padding
        if op.kind == "deconv":
            offset += (p - Fraction(k - 1, 2)) / s * jump
            size += (k - 1) // s * jump
            jump /= s
        else:
            offset += (Fraction(k - 1, 2) - p) * jump
            size += (k - 1) * jump
            jump *= s
        records.append(LayerRF(op.name, op.kind, float(size), float(jump), float(offset)))
    return records


def compose(outer: tuple[int, int], inner: tuple[int, int]) -> tuple[int, int]:
    """(kernel, stride) of ``outer`` after ``inner``, the paper's ``(f o g)_{k' + (k-1)s', ss'}``.

    >>> compose((2, 2), (3, 1))  # a 2x2/2 pool after a 3x3 conv sees 4 pixels, 2 apart
    (4, 2)
    """
    (k, s), (k_in, s_in) = outer, inner
    return k_in + (k - 1) * s_in, s * s_in


def chain_kernel_stride(layers: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """Fold :func:`compose` over ``(kernel, stride)`` pairs given in forward order.

    >>> chain_kernel_stride([(3, 1), (3, 1), (2, 2)])  # conv1_1, conv1_2, pool1 of VGG16
    (6, 2)
    """
    total = (1, 1)  # the identity layer
    for layer in layers:
        total = compose(layer, total)
    return total


def _exact(x: float | Fraction) -> Fraction:
    # Keep 1/3 as 1/3 rather than its binary float, so offsets like 19 stay exact integers.
    return Fraction(x).limit_denominator(1 << 24) if isinstance(x, float) else Fraction(x)


@dataclass(frozen=True)
class CoordMap:
    """The affine map ``y = scale * x + shift`` from input coordinates ``x`` to a blob's ``y``.

    Pixel centres sit at integers in both. Numbers are kept as exact fractions. ``a.then(b)``
    (also ``b @ a``) applies ``a`` first, so a chain's map is its layers' maps in forward order.

    >>> pool = CoordMap(Fraction(1, 2), Fraction(-1, 4))  # 2x2/2 pool: unit 0 sits at x = 0.5
    >>> pool(0.5), pool.then(pool.inverse())
    (0.0, CoordMap(scale=1, shift=0))
    """

    scale: Fraction
    shift: Fraction

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _exact(self.scale))
        object.__setattr__(self, "shift", _exact(self.shift))
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")

    @classmethod
    def identity(cls) -> CoordMap:
        """The input's own map."""
        return cls(1, 0)

    def __call__(self, x: float) -> float:
        return float(self.scale * _exact(x) + self.shift)

    def then(self, after: CoordMap) -> CoordMap:
        """This map followed by ``after``."""
        return CoordMap(after.scale * self.scale, after.scale * self.shift + after.shift)

    def __matmul__(self, first: CoordMap) -> CoordMap:
        return first.then(self)

    def inverse(self) -> CoordMap:
        """From the blob's coordinates back to the input's."""
        return CoordMap(1 / self.scale, -self.shift / self.scale)

    def __repr__(self) -> str:
        return f"CoordMap(scale={self.scale}, shift={self.shift})"


def coord_map(
    module: nn.Module | Sequence[nn.Module],
    *,
    axis: int = -1,
    input_size: int | Sequence[int] | None = None,
    in_channels: int | None = None,
    pointwise: Iterable[type] = (),
) -> CoordMap:
    """The :class:`CoordMap` from a chain's input to its output (arguments: see receptive_field).

    Conv / pool: ``scale 1/s, shift (p - (k_eff-1)/2) / s``; transposed conv: ``scale s, shift
    (k_eff-1)/2 - p``; pointwise: identity. ``-shift / scale`` is :class:`LayerRF`'s ``offset``.

    >>> coord_map([nn.Conv2d(3, 8, 3, padding=100)])  # unit 0 is centred on input pixel -99
    CoordMap(scale=1, shift=99)
    """
    total = CoordMap.identity()
    for op in _ops(module, axis, input_size, in_channels, pointwise):
        total = total.then(_op_map(op))
    return total


def _op_map(op: _Op) -> CoordMap:
    k, s, p = op.kernel, op.stride, op.padding
    if op.kind == "deconv":
        return CoordMap(s, Fraction(k - 1, 2) - p)
    return CoordMap(Fraction(1, s), (p - Fraction(k - 1, 2)) / s)


def crop_offset(
    source: CoordMap, reference: CoordMap, *, allow_padding: bool = False, rounding: bool = False
) -> int:
    """Offset at which to crop the blob with map ``source`` to register it with ``reference``.

    Both maps start at the same input. After ``source[..., c:c + h_ref]`` with ``c`` the result,
    unit ``j`` of both blobs sits at the same input coordinate. In FCN-32s, for example,
    ``crop_offset(coord_map(net), CoordMap.identity())`` is the official crop of 19. This is the
    one crop rule of fcnlib: :class:`fcnlib.models.FCN` computes its crops with it.

    ``allow_padding``: a negative offset (``source`` starts inside ``reference``) is returned
    for the caller to pad, instead of raising. ``rounding``: an offset that is not a whole
    number of units is rounded to the nearest one, instead of raising (nets whose pools mix
    even and odd windows end a fraction of a pixel out of register; a crop cannot do better).

    >>> padded = coord_map([nn.Conv2d(3, 8, 3, padding=100)])  # unit 99 is over input pixel 0
    >>> crop_offset(padded, CoordMap.identity())
    99
    """
    if source.scale != reference.scale:
        raise ValueError(
            f"cannot crop: the blobs have different resolutions (scale {source.scale} vs "
            f"{reference.scale} units per input pixel); upsample one to the other's scale first"
        )
    offset = source.shift - reference.shift
    if offset.denominator != 1 and rounding:
        offset = Fraction(round(offset))
    if offset.denominator != 1:
        raise ValueError(
            f"cannot crop: source is shifted by {offset} = {float(offset):g} units from reference, "
            "not a whole number, so no crop registers them; change a padding or kernel size"
        )
    if offset < 0 and not allow_padding:
        raise ValueError(
            f"cannot crop: source would need an offset of {offset}, it starts {-offset} units "
            f"inside the reference; crop the reference instead (offset {-offset}) or pad the source"
        )
    return int(offset)


@dataclass(frozen=True, eq=False)
class EmpiricalRF:
    """Measured receptive field of one output unit (see :func:`empirical_receptive_field`).

    ``grad``: float ``(H, W)``, mean absolute input gradient, max 1; ``support``: bool ``(H, W)``,
    nonzero gradient; ``bbox``: ``(top, left, bottom, right)`` of the support, inclusive;
    ``size``: its ``(height, width)``; ``position``: the output unit ``(y, x)``.
    """

    grad: torch.Tensor = field(repr=False)
    support: torch.Tensor = field(repr=False)
    bbox: tuple[int, int, int, int]
    size: tuple[int, int]
    position: tuple[int, int]


def empirical_receptive_field(
    module: nn.Module,
    *,
    input_size: int | Sequence[int],
    position: tuple[int, int] | None = None,
    n_samples: int = 4,
    seed: int = 0,
    in_channels: int | None = None,
) -> EmpiricalRF:
    """Which input pixels reach one output unit: ``|d out[:, :, y, x].sum() / d input|``.

    Max pooling passes gradient to one input per window and ReLU blocks it where inactive, so one
    input shows only part of the field: the gradients of ``n_samples`` seeded Gaussian inputs
    ``(n_samples, C, H, W)`` are averaged. The module runs in eval mode (restored afterwards);
    neither its parameters nor their ``.grad`` change. The support tends to the theoretical field,
    but the gradient mass concentrates in a smaller effective field (:func:`effective_radius`).

    Args:
        module: maps ``(N, C, H, W)`` to ``(N, C', H', W')``.
        input_size: ``(H, W)``; make it large enough that the unit's field fits inside.
        position: output unit ``(y, x)``; default the centre ``(H' // 2, W' // 2)``.

    >>> net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))
    >>> empirical_receptive_field(net, input_size=9).size
    (5, 5)
    """
    g = torch.Generator().manual_seed(seed)
    shape = (n_samples, _in_channels(module, in_channels), *_pair(input_size))
    x = torch.randn(shape, generator=g).to(**_like(module)).requires_grad_()
    with eval_mode(module), torch.enable_grad():
        out = module(x)
        if out.dim() != 4:
            raise ValueError(f"expected a (N, C, H, W) output, got shape {tuple(out.shape)}")
        h, w = out.shape[-2:]
        y, x_ = (h // 2, w // 2) if position is None else position
        if not (0 <= y < h and 0 <= x_ < w):
            raise ValueError(f"position {(y, x_)} is outside the {h}x{w} output")
        (grad,) = torch.autograd.grad(out[:, :, y, x_].sum(), x)  # leaves param .grad alone
    grad = grad.detach().abs().sum(1).mean(0).float()  # (H, W)
    support = grad > 0
    if not support.any():
        raise ValueError(f"output unit {(y, x_)} has zero gradient for every sample; try more")
    rows, cols = support.any(1).nonzero()[:, 0], support.any(0).nonzero()[:, 0]
    bbox = (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
    size = (bbox[2] - bbox[0] + 1, bbox[3] - bbox[1] + 1)
    return EmpiricalRF(grad / grad.max(), support, bbox, size, (y, x_))


def effective_radius(
    grad: torch.Tensor, *, mass: float = 0.9, centre: tuple[float, float] | None = None
) -> float:
    """Smallest radius around ``centre`` holding ``mass`` of the gradient (Euclidean, in pixels).

    Args:
        grad: non-negative ``(H, W)``, e.g. ``empirical_receptive_field(...).grad``.
        mass: fraction in ``(0, 1]``.
        centre: ``(y, x)``; default the gradient's centre of mass.

    >>> effective_radius(torch.ones(3, 3), mass=1.0)  # the corners are sqrt(2) away
    1.4142135623730951
    """
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    if grad.dim() != 2 or (grad < 0).any() or grad.sum() <= 0:
        raise ValueError("grad must be a non-negative (H, W) tensor with some positive entries")
    g = grad.detach().double().cpu()
    ys = torch.arange(g.shape[0], dtype=g.dtype)[:, None]  # (H, 1), broadcasts against xs (W,)
    xs = torch.arange(g.shape[1], dtype=g.dtype)
    if centre is None:
        centre = (float((g * ys).sum() / g.sum()), float((g * xs).sum() / g.sum()))
    dist = torch.hypot(ys - centre[0], xs - centre[1]).flatten()
    dist, order = dist.sort()
    held = g.flatten()[order].cumsum(0)
    i = int(torch.searchsorted(held, mass * held[-1]))
    return float(dist[min(i, len(dist) - 1)])

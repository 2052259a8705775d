"""The lab bench: synthetic scenes whose objects are told apart by shape alone.

Every chapter trains on these scenes, so they are built to make the paper's phenomena visible on a
CPU in minutes:

* **Class is shape, not colour.** Each object gets a random colour and a random stripe texture, so
  a pixel deep inside a large disc looks exactly like a pixel inside a large square. Labelling it
  needs a receptive field that reaches the outline: *context*.
* **Scale varies ten-fold** (radius 5% to 40% of the image side), so no single receptive field
  size fits every object.
* **Thin and small structures**: ``bar`` is a few pixels wide and the ring's hole is small;
  a stride-32 output cannot draw them, skips can.
* **Clutter and occlusion**: objects overlap (painter's order) on a textured background with
  amorphous colour blobs that are *background*, so "coloured = object" does not work.
* **Void band**: a band of ``255`` ("void", ignored by loss and metrics) outside every object
  boundary, as in PASCAL VOC's annotations.

Two options, both off by default, add the inputs and targets of the paper's Section 5 (Chapter 7):

* ``geometry=True``: a second label map on the same pixels, like SIFT Flow's three geometric
  classes next to its semantic ones. Here the second task is the object's *fill*
  (:data:`GEO_CLASSES`: background, plain, striped): visible in the pixels, drawn independently
  of the shape, so it is a different task that a two-headed net learns from the same features.
* ``depth=True``: an RGB-D scene, like NYUDv2. The image gets a fourth channel, a depth map: a
  floor receding towards the top of the image and, on it, every object a fronto-parallel patch
  nearer than the floor behind it, later-painted objects nearer. Some objects are *camouflaged*
  (drawn in the floor's own colours), faint in RGB and plain in depth, so depth adds
  information that RGB lacks.

Scenes are generated on the fly, deterministically: sample ``i`` of a given ``seed``, split and
configuration is the same tensor on every call and machine, alone or in any batch. A scene's
layout does not depend on the image size, so one scene can be rendered at several resolutions.
Generation runs on one CPU thread whatever ``torch.get_num_threads()`` says: the pixels do not
depend on the thread count (split reductions can differ in the last bit), and a busy machine
slows the scenes down by its share only, where several threads would wait on each other.

>>> ds = ShapesDataset("train", size=64)
>>> image, label = ds[0]
>>> image.shape, image.dtype, label.shape, label.dtype
(torch.Size([3, 64, 64]), torch.float32, torch.Size([64, 64]), torch.int64)
>>> rgbd, label, geo = ShapesDataset("train", size=64, depth=True, geometry=True)[0]
>>> rgbd.shape, geo.shape, geo.dtype  # RGB + depth / MAX_DEPTH; geo indexes GEO_CLASSES
(torch.Size([4, 64, 64]), torch.Size([64, 64]), torch.int64)
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fcnlib.data.labels import IGNORE_INDEX
from fcnlib.system import torch_threads

__all__ = [
    "CLASSES",
    "GEO_CLASSES",
    "MAX_DEPTH",
    "OBJECT_CLASSES",
    "SPLITS",
    "ShapesClassification",
    "ShapesDataset",
]

OBJECT_CLASSES = ("disc", "square", "triangle", "ring", "cross", "bar")
CLASSES = ("background", *OBJECT_CLASSES)  # label c is CLASSES[c]; 255 is void
SPLITS = ("train", "val", "test")
# geometry=True: geo label g is GEO_CLASSES[g], 255 (void) exactly where the semantic label is void.
# "striped" objects show stripes of contrast >= _STRIPED_CONTRAST; all other objects are "plain".
GEO_CLASSES = ("background", "plain", "striped")
MAX_DEPTH = 10.0  # depth=True: the depth channel is depth / MAX_DEPTH (metres-like); 0 = no reading
_DEFAULT_LENGTH = {"train": 2000, "val": 200, "test": 200}

# Stripe contrast (peak-to-peak RGB distance, strength * |c1 - c0|) from which an object counts as
# "striped": 5x the default pixel noise (0.03); about half the objects are striped.
_STRIPED_CONTRAST = 0.15
_CAMO_TINT = 0.06  # RGB distance between a camouflaged object and the floor it copies
_NEAR = 0.5  # depth of the camera's near plane: objects stack towards it, never past it
# Every shape lies within 1.25 r of its centre (triangle: 1.2 r; the bar: 1.2 r and its width).
_BOUND = 1.25
_HOLES_GRID = 8  # missing-depth blobs: a coarse random field, thresholded
T = TypeVar("T")


def _single_threaded(batch: Callable[..., T]) -> Callable[..., T]:
    """Run ``batch`` on one intra-op thread (see the module documentation), then restore."""

    @functools.wraps(batch)
    def run(*args: Any, **kwargs: Any) -> T:
        with torch_threads(1):  # sets nothing in DataLoader workers or inside materialize
            return batch(*args, **kwargs)

    return run


# --------------------------------------------------------------------------------------------
# Scene parameters: a few numbers per object, drawn from one generator per sample.
# --------------------------------------------------------------------------------------------


@dataclass
class _Objects:
    """Per-object parameters for a batch, each a tensor of shape (B, K).

    Positions and sizes are fractions of the image (x of the width, y of the height, radius of
    the shorter side) so the same scene renders at any resolution.
    """

    cls: torch.Tensor  # int64, object class 0..5 (index into OBJECT_CLASSES)
    active: torch.Tensor  # bool, False for padding slots (fewer objects than K)
    cx: torch.Tensor
    cy: torch.Tensor
    radius: torch.Tensor
    angle: torch.Tensor
    color: torch.Tensor  # (B, K, 2, 3): base colour and stripe colour
    stripe: torch.Tensor  # (B, K, 3): stripe frequency (cycles per radius), angle, strength
    camo: torch.Tensor | None = None  # bool (B, K): drawn in the floor's colours (camouflage > 0)
    tint: torch.Tensor | None = None  # (B, K, 3): a camouflaged object's small colour shift


def _sample_seed(seed: int, split: str, index: int, kind: str) -> int:
    # A hash, not seed + index: neighbouring seeds or splits must not share samples.
    digest = hashlib.sha256(f"fcnlib/{kind}/{seed}/{split}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _check_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        h = w = size
    elif (
        isinstance(size, Sequence)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        h, w = size
    else:
        raise TypeError(f"size must be an int or a pair of ints (H, W), got {size!r}")
    if h <= 0 or w <= 0:
        raise ValueError(
            f"image size must be positive, got (H, W) = ({h}, {w}); "
            "pass e.g. size=128 or size=(96, 128)"
        )
    return h, w


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


# --------------------------------------------------------------------------------------------
# Rendering: signed distances of the six shapes, evaluated for a whole batch at once.
# --------------------------------------------------------------------------------------------


def _box(u: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Negative inside the axis-aligned box of half-sizes (a, b); exact enough for masks.
    return torch.maximum(u.abs() - a, v.abs() - b)


def _shape_sdf(
    cls: int, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor, bar_half_width: float
) -> torch.Tensor:
    """Signed distance (pixels, < 0 inside) of object class ``cls`` in its local frame.

    ``u, v``: (M, H, W) coordinates relative to the object's centre, rotated with it.
    ``r``: (M, 1, 1) radius in pixels. All shapes fill a similar area for the same radius.
    """
    name = OBJECT_CLASSES[cls]
    if name == "disc":
        return torch.sqrt(u * u + v * v) - r
    if name == "square":
        return _box(u, v, 0.82 * r, 0.82 * r)
    if name == "triangle":
        # Equilateral, circumradius 1.2 r: the three edges have inradius 0.6 r.
        d = None
        for k in range(3):
            t = math.pi / 2 + 2 * math.pi * k / 3
            e = u * math.cos(t) + v * math.sin(t)
            d = e if d is None else torch.maximum(d, e)
        return d - 0.6 * r
    if name == "ring":
        # Outer radius r, hole of radius 0.5 r: the hole is a small background region.
        return (torch.sqrt(u * u + v * v) - 0.75 * r).abs() - 0.25 * r
    if name == "cross":
        return torch.minimum(_box(u, v, r, 0.3 * r), _box(u, v, 0.3 * r, r))
    if name == "bar":
        # Long and thin whatever the radius: the structure a stride-32 output cannot draw.
        return _box(u, v, 1.2 * r, torch.full_like(r, bar_half_width))
    raise AssertionError(name)


def _smooth_noise(z: torch.Tensor, h: int, w: int, mode: str = "bilinear") -> torch.Tensor:
    # Upsampling a coarse random grid: cheap, smooth, "natural" background variation.
    return F.interpolate(z, size=(h, w), mode=mode, align_corners=False)


def _render(
    objs: _Objects,
    bg: dict[str, torch.Tensor],
    noise: torch.Tensor,
    h: int,
    w: int,
    void_width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paint a batch of scenes. Returns images (B, 3, H, W) in [0, 1], labels (B, H, W) and
    instance maps (B, H, W): 1 + the painting slot of the object seen at each pixel, 0 for floor."""
    b, k = objs.cls.shape
    side = min(h, w)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5).view(1, h, 1)  # pixel centres
    xs = (torch.arange(w, dtype=torch.float32) + 0.5).view(1, 1, w)

    # Background: a colour gradient, two octaves of smooth noise and amorphous blobs.
    img = bg["base"].view(b, 3, 1, 1) + 0.25 * _smooth_noise(bg["coarse"], h, w)
    img = img + 0.12 * _smooth_noise(bg["fine"], h, w)
    # Bicubic, not bilinear: thresholded bilinear fields grow thin creases that look like bars.
    blob_field = _smooth_noise(bg["blob_field"], h, w, mode="bicubic")  # (B, 1, H, W)
    blob_alpha = ((blob_field - bg["blob_level"].view(b, 1, 1, 1)) * 8).clamp(0, 1)
    img = img * (1 - blob_alpha) + bg["blob_color"].view(b, 3, 1, 1) * blob_alpha
    floor = img.clone() if objs.camo is not None else None  # what camouflaged objects copy

    label = torch.zeros(b, h, w, dtype=torch.int64)
    inst = torch.zeros(b, h, w, dtype=torch.int64)
    bar_half = max(0.75, 0.012 * side)
    for j in range(k):  # painter's order: later objects occlude earlier ones
        act = objs.active[:, j]
        if not act.any():
            continue
        idx = act.nonzero().squeeze(1)
        cx = (objs.cx[idx, j] * w).view(-1, 1, 1)
        cy = (objs.cy[idx, j] * h).view(-1, 1, 1)
        r = (objs.radius[idx, j] * side).view(-1, 1, 1)
        ang = objs.angle[idx, j].view(-1, 1, 1)
        dx, dy = xs - cx, ys - cy
        u = torch.cos(ang) * dx + torch.sin(ang) * dy  # (M, H, W), object frame
        v = -torch.sin(ang) * dx + torch.cos(ang) * dy
        sdf = torch.empty_like(u)
        cls = objs.cls[idx, j]
        for c in cls.unique().tolist():
            sel = cls == c
            sdf[sel] = _shape_sdf(c, u[sel], v[sel], r[sel], bar_half)
        # Coverage with a one-pixel anti-aliased edge; the label is where coverage >= 1/2.
        alpha = (0.5 - sdf).clamp(0, 1).unsqueeze(1)  # (M, 1, H, W)
        freq, s_ang, strength = objs.stripe[idx, j].unbind(-1)
        phase = torch.cos(s_ang).view(-1, 1, 1) * u + torch.sin(s_ang).view(-1, 1, 1) * v
        stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * freq.view(-1, 1, 1) * phase / r)
        mix = (strength.view(-1, 1, 1) * stripes).unsqueeze(1)
        c0 = objs.color[idx, j, 0].view(-1, 3, 1, 1)
        c1 = objs.color[idx, j, 1].view(-1, 3, 1, 1)
        tex = c0 * (1 - mix) + c1 * mix
        if objs.camo is not None and objs.camo[idx, j].any():
            camo = objs.camo[idx, j].view(-1, 1, 1, 1)
            tex = torch.where(camo, floor[idx] + objs.tint[idx, j].view(-1, 3, 1, 1), tex)
        img[idx] = img[idx] * (1 - alpha) + tex * alpha
        inside = sdf <= 0
        label[idx] = torch.where(inside, (cls + 1).view(-1, 1, 1), label[idx])
        inst[idx] = torch.where(
            inside, torch.full_like(inside, j + 1, dtype=torch.int64), inst[idx]
        )

    img = (img + noise).clamp(0, 1)
    if void_width > 0:
        # Void outside each visible boundary: a pixel is void if a neighbour within void_width
        # shows an object painted above it (higher instance id). Objects keep their full area,
        # so thin bars survive; the ambiguous anti-aliased pixels become "don't care".
        ksize = 2 * void_width + 1
        above = F.max_pool2d(inst.unsqueeze(1).float(), ksize, stride=1, padding=void_width)
        label[above.squeeze(1) > inst.float()] = IGNORE_INDEX
    return img, label, inst


def _draw_background(g: torch.Generator) -> dict[str, torch.Tensor]:
    def rand(*shape):
        return torch.rand(*shape, generator=g)

    return {
        "base": 0.15 + 0.7 * rand(3),
        "coarse": rand(3, 3, 3) - 0.5,
        "fine": rand(3, 12, 12) - 0.5,
        "blob_field": rand(1, 5, 5),
        "blob_level": 0.6 + 0.35 * rand(1),  # a higher level leaves fewer blobs
        "blob_color": rand(3),
    }


def _draw_object(
    g: torch.Generator, *, cls: int, cx: float, cy: float, radius: float, bg_base: torch.Tensor
) -> dict[str, torch.Tensor]:
    def rand(*shape):
        return torch.rand(*shape, generator=g)

    c0 = rand(3)
    if torch.linalg.vector_norm(c0 - bg_base) < 0.35:  # keep objects visible on their background
        c0 = 1 - c0
    c1 = rand(3)
    stripe = torch.stack([1 + 3 * rand(()), math.pi * rand(()), rand(()) * (rand(()) < 0.7)])
    return {
        "cls": torch.tensor(cls),
        "cx": torch.tensor(cx),
        "cy": torch.tensor(cy),
        "radius": torch.tensor(radius),
        "angle": 2 * math.pi * rand(()),
        "color": torch.stack([c0, c1]),
        "stripe": stripe,
    }


def _stack_objects(per_sample: list[list[dict[str, torch.Tensor]]], k: int) -> _Objects:
    b = len(per_sample)
    out = _Objects(
        cls=torch.zeros(b, k, dtype=torch.int64),
        active=torch.zeros(b, k, dtype=torch.bool),
        cx=torch.zeros(b, k),
        cy=torch.zeros(b, k),
        radius=torch.ones(b, k),
        angle=torch.zeros(b, k),
        color=torch.zeros(b, k, 2, 3),
        stripe=torch.zeros(b, k, 3),
    )
    for i, objs in enumerate(per_sample):
        for j, o in enumerate(objs):
            out.active[i, j] = True
            for name in ("cls", "cx", "cy", "radius", "angle", "color", "stripe"):
                getattr(out, name)[i, j] = o[name]
    return out


# --------------------------------------------------------------------------------------------
# Chapter 7's extras: a fill label per object (geometry) and a depth map (RGB-D).
# --------------------------------------------------------------------------------------------


def _draw_extras(g: torch.Generator, n: int, camouflage: float) -> dict[str, torch.Tensor]:
    """Scene-level draws for camouflage and depth, from a generator of their own so that the
    RGB layout stays exactly that of the plain scenes. Independent of the image size."""

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    # Always drawn, whatever the options: camouflage=0.3 and camouflage=0 share the same depths.
    camo = rand(n) < camouflage
    tint = torch.randn(n, 3, generator=g)
    tint = _CAMO_TINT * tint / torch.linalg.vector_norm(tint, dim=1, keepdim=True).clamp_min(1e-6)
    return {
        "camo": camo,
        "tint": tint,
        "gap": 0.08 + 0.17 * rand(n),  # each object 8% to 25% nearer than what lies behind it
        "floor": torch.stack([1.5 + rand(()), 6 + 3 * rand(())]),  # depth at bottom, top row
        "holes": rand(1, _HOLES_GRID, _HOLES_GRID),
    }


def _floor_depth(y: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """Depth of a floor plane seen by an upright pinhole camera at image row ``y`` (a fraction of
    the height, 0 = top): inverse depth is linear in the row, from ``floor[..., 1]`` at the top
    to ``floor[..., 0]`` at the bottom. ``y`` and ``floor[..., 0]`` broadcast together."""
    near, far = floor[..., 0], floor[..., 1]
    return 1 / (1 / far + (1 / near - 1 / far) * y)


def _object_depths(objs: _Objects, floor: torch.Tensor, gap: torch.Tensor, h: int, w: int):
    """Depth (B, K) of every object: a fronto-parallel patch a ``gap`` nearer than both the floor
    at its lowest point and every object painted before it, so painter's order is depth order."""
    side = min(h, w)
    bottom = (objs.cy + _BOUND * objs.radius * side / h).clamp(max=1.0)  # lowest row, fraction
    z_floor = _floor_depth(bottom, floor[:, None, :].expand(*bottom.shape, 2))  # (B, K)
    z = torch.zeros_like(z_floor)
    behind = torch.full_like(z_floor[:, 0], math.inf)  # depth of the nearest object so far
    for j in range(z.shape[1]):
        z[:, j] = _NEAR + (1 - gap[:, j]) * (torch.minimum(z_floor[:, j], behind) - _NEAR)
        behind = torch.where(objs.active[:, j], z[:, j], behind)
    return z


def _depth_map(
    objs: _Objects,
    inst: torch.Tensor,
    extras: dict[str, torch.Tensor],
    pixel_noise: torch.Tensor,
    *,
    holes: float,
) -> torch.Tensor:
    """Depth in metres (B, 1, H, W): floor and objects as a z-buffer, relative Gaussian noise
    (``pixel_noise`` is already scaled), blobs of ``0`` (no reading) on a ``holes`` fraction."""
    b, h, w = inst.shape
    y = ((torch.arange(h, dtype=torch.float32) + 0.5) / h).view(1, h, 1)
    floor = _floor_depth(y, extras["floor"].view(b, 1, 1, 2)).expand(b, h, w)
    z = _object_depths(objs, extras["floor"], extras["gap"], h, w)
    z = torch.cat([torch.zeros(b, 1), z], 1)  # slot 0: "no object", as in inst
    depth = torch.where(inst > 0, z.gather(1, inst.view(b, -1)).view(b, h, w), floor)
    depth = (depth * (1 + pixel_noise)).clamp(0, MAX_DEPTH)
    n_holes = round(holes * h * w)
    if n_holes > 0:
        field = _smooth_noise(extras["holes"], h, w, mode="bicubic").view(b, -1)
        level = field.kthvalue(n_holes, dim=1, keepdim=True).values  # exactly n_holes pixels
        depth = depth.masked_fill((field <= level).view(b, h, w), 0.0)
    return depth.unsqueeze(1)


def _geo_labels(objs: _Objects, inst: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Geometric labels (B, H, W) indexing GEO_CLASSES: each object pixel gets its object's fill,
    from the colours actually painted (camouflaged objects show no stripes); void as ``label``."""
    b, h, w = inst.shape
    contrast = objs.stripe[..., 2] * torch.linalg.vector_norm(
        objs.color[:, :, 1] - objs.color[:, :, 0], dim=-1
    )  # (B, K) peak-to-peak stripe contrast
    striped = contrast >= _STRIPED_CONTRAST
    if objs.camo is not None:
        striped &= ~objs.camo
    fill = torch.cat([torch.zeros(b, 1, dtype=torch.int64), 1 + striped.long()], 1)  # slot 0: bg
    geo = fill.gather(1, inst.view(b, -1)).view(b, h, w)
    return geo.masked_fill(label == IGNORE_INDEX, IGNORE_INDEX)


class _SyntheticBase(Dataset):
    """Shared machinery: per-sample generators, batched rendering, lengths, materialising."""

    _kind = "base"

    def __init__(
        self,
        split: str,
        *,
        size: int | Sequence[int],
        seed: int,
        length: int | None,
        void_width: int,
        noise: float,
    ) -> None:
        self.split = _check_split(split)
        self.size = _check_size(size)
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        self.length = _DEFAULT_LENGTH[split] if length is None else int(length)
        if self.length < 0:
            raise ValueError(f"length must be >= 0, got {length!r}")
        if not isinstance(void_width, int) or void_width < 0:
            raise ValueError(
                f"void_width must be an int >= 0 (0: no void band), got {void_width!r}"
            )
        self.void_width = void_width
        self.noise = float(noise)

    def __len__(self) -> int:
        return self.length

    def _generator(self, index: int) -> torch.Generator:
        if not 0 <= index < self.length:
            raise IndexError(
                f"index {index} out of range for a {self.split} split of {self.length}"
            )
        return torch.Generator().manual_seed(_sample_seed(self.seed, self.split, index, self._kind))

    def _layout(self, g: torch.Generator) -> tuple[list[dict[str, torch.Tensor]], dict, int]:
        raise NotImplementedError

    def _scenes(self, indices: Sequence[int]) -> tuple[_Objects, dict, torch.Tensor, list]:
        """Layouts of several samples stacked for :func:`_render`: (objects, backgrounds,
        pixel noise, targets)."""
        h, w = self.size
        objects, backgrounds, noises, targets = [], [], [], []
        for i in indices:
            g = self._generator(int(i))
            objs, bg, target = self._layout(g)
            # Pixel noise last, so the layout above never depends on the image size.
            noises.append(self.noise * torch.randn(3, h, w, generator=g))
            objects.append(objs)
            backgrounds.append(bg)
            targets.append(target)
        k = max(1, max(len(o) for o in objects))
        bg = {key: torch.stack([b[key] for b in backgrounds]) for key in backgrounds[0]}
        return _stack_objects(objects, k), bg, torch.stack(noises), targets

    def _render_batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list]:
        objs, bg, noise, targets = self._scenes(indices)
        img, label, _ = _render(objs, bg, noise, *self.size, self.void_width)
        return img, label, targets

    def materialize(self, *, batch_size: int = 64) -> tuple[torch.Tensor, ...]:
        """The whole split as stacked tensors, one per item field (``(images, targets)``, or as
        the item layout says), generated in batches.

        On the lab bench a split fits in memory; training from these tensors skips all per-item
        overhead.
        """
        with torch_threads(1):  # once for all the batches, not per batch
            parts = [
                self.batch(range(s, min(s + batch_size, self.length)))
                for s in range(0, self.length, batch_size)
            ]
        if not parts:
            raise ValueError("cannot materialise an empty dataset (length=0)")
        return tuple(torch.cat(field) for field in zip(*parts, strict=True))

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if index < 0:
            index += self.length
        return tuple(field[0] for field in self.batch([index]))

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, ...]]:
        # DataLoader calls this with a whole batch of indices: render them vectorised.
        return list(zip(*self.batch(indices), strict=True))

    def _options_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        h, w = self.size
        return (
            f"{type(self).__name__}(split={self.split!r}, size=({h}, {w}), seed={self.seed}, "
            f"length={self.length}{self._options_repr()})"
        )


class ShapesDataset(_SyntheticBase):
    """Synthetic scenes for semantic segmentation (the lab bench).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``; the splits never share a scene.
        size: image size, an int or ``(H, W)``; any positive size works, tiny and odd included.
        seed: dataset seed. Sample ``i`` depends only on ``(seed, split, i)`` and the options.
        length: number of scenes (default 2000 train, 200 val/test); scenes are generated on
            demand, so any length costs nothing up front.
        n_objects: inclusive range of objects per scene.
        radius: inclusive range of object radius as a fraction of the shorter image side,
            sampled log-uniformly (small objects are as common as large ones per octave).
        void_width: width in pixels of the void band (label 255) outside object boundaries;
            0 for none.
        noise: standard deviation of per-pixel Gaussian noise.
        geometry: also return a second label map, the objects' fill (:data:`GEO_CLASSES`).
        depth: append a depth channel to the image (RGB-D).
        camouflage: probability that an object is drawn in the floor's own colours and pattern,
            shifted by a faint tint (RGB distance 0.06), with no stripes; default 0.3 with
            ``depth`` and 0 without. It changes only the colours of those objects: labels and
            depth are those of ``camouflage=0``, and ``depth=False`` with the same camouflage
            gives exactly the RGB channels of ``depth=True`` (the RGB-only baseline).
        depth_noise: standard deviation of the depth noise relative to the depth (0.01: 1%).
        depth_holes: fraction of pixels with no depth reading (``0``), in blobs like a Kinect's.

    Items are ``(image, label)``, or ``(image, label, geo)`` with ``geometry=True``:

    * ``image`` float32 ``(3, H, W)``, RGB in ``[0, 1]``; with ``depth=True`` ``(4, H, W)``:
      RGB, then depth / :data:`MAX_DEPTH` in ``[0, 1]`` (``0`` = no reading).
    * ``label`` int64 ``(H, W)`` with values in ``0..6`` (see :data:`CLASSES`) and ``255`` for void.
    * ``geo`` int64 ``(H, W)``: ``0`` background (exactly where ``label == 0``), ``1`` plain or
      ``2`` striped object (:data:`GEO_CLASSES`), ``255`` exactly where ``label == 255``.
      Striped: stripes of peak-to-peak contrast >= 0.15 (5x the default pixel noise); plain:
      a flat colour, faint stripes, or camouflage. The fill is drawn independently of the shape,
      so ``geo`` agrees with ``label`` on background and void and is independent of the class
      on objects: about half of every class is striped.

    Depth is metres-like: a floor plane from 1.5-2.5 at the bottom row to 6-9 at the top row
    (inverse depth linear in the row, as seen by an upright camera); every object a
    fronto-parallel patch 8%-25% nearer than both the floor at its lowest point and every object
    painted before it (later objects occlude and are nearer), never nearer than 0.5.
    ``depth_noise`` and ``depth_holes`` then blur it, as a depth sensor does.

    The options draw from a generator of their own: with all of them off every scene is that of
    earlier versions, bit for bit, and ``geometry`` changes neither image nor label.

    >>> ds = ShapesDataset("val", size=(48, 80), length=4)
    >>> images, labels = ds.batch([0, 1, 2, 3])  # vectorised: (4, 3, 48, 80), (4, 48, 80)
    >>> bool((labels[labels != 255] < len(ds.classes)).all())
    True
    >>> rgbd_ds = ShapesDataset("val", size=32, depth=True, geometry=True)
    >>> rgbd, labels, geo = rgbd_ds.batch([0, 1])
    >>> rgbd.shape, rgbd_ds.in_channels, rgbd_ds.n_geo_classes
    (torch.Size([2, 4, 32, 32]), 4, 3)
    >>> metres = rgbd[:, 3] * MAX_DEPTH  # 0 where the sensor had no reading
    """

    _kind = "scenes"
    classes = CLASSES
    n_classes = len(CLASSES)
    geo_classes = GEO_CLASSES
    n_geo_classes = len(GEO_CLASSES)
    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        split: str = "train",
        *,
        size: int | Sequence[int] = 128,
        seed: int = 0,
        length: int | None = None,
        n_objects: tuple[int, int] = (1, 5),
        radius: tuple[float, float] = (0.05, 0.4),
        void_width: int = 1,
        noise: float = 0.03,
        geometry: bool = False,
        depth: bool = False,
        camouflage: float | None = None,
        depth_noise: float = 0.01,
        depth_holes: float = 0.02,
    ) -> None:
        super().__init__(
            split, size=size, seed=seed, length=length, void_width=void_width, noise=noise
        )
        lo, hi = n_objects
        if not 0 <= lo <= hi:
            raise ValueError(
                f"n_objects must be a range (lo, hi) with 0 <= lo <= hi, got {n_objects}"
            )
        rlo, rhi = radius
        if not 0 < rlo <= rhi:
            raise ValueError(f"radius must be a range (lo, hi) with 0 < lo <= hi, got {radius}")
        self.n_objects = (int(lo), int(hi))
        self.radius = (float(rlo), float(rhi))
        self.geometry = bool(geometry)
        self.depth = bool(depth)
        camouflage = (0.3 if self.depth else 0.0) if camouflage is None else float(camouflage)
        if not 0 <= camouflage <= 1:
            raise ValueError(f"camouflage is a probability in [0, 1], got {camouflage}")
        if depth_noise < 0 or not 0 <= depth_holes < 1:
            raise ValueError(
                "depth_noise must be >= 0 and depth_holes in [0, 1), "
                f"got depth_noise={depth_noise}, depth_holes={depth_holes}"
            )
        self.camouflage = camouflage
        self.depth_noise = float(depth_noise)
        self.depth_holes = float(depth_holes)
        self.in_channels = 4 if self.depth else 3

    def _layout(self, g):
        bg = _draw_background(g)
        lo, hi = self.n_objects
        n = int(torch.randint(lo, hi + 1, (), generator=g))
        log_lo, log_hi = math.log(self.radius[0]), math.log(self.radius[1])
        objs, depth = [], []
        for _ in range(n):
            cls = int(torch.randint(len(OBJECT_CLASSES), (), generator=g))
            cx, cy = (0.05 + 0.9 * torch.rand(2, generator=g)).tolist()
            r = math.exp(log_lo + (log_hi - log_lo) * float(torch.rand((), generator=g)))
            objs.append(_draw_object(g, cls=cls, cx=cx, cy=cy, radius=r, bg_base=bg["base"]))
            depth.append(r * (0.5 + float(torch.rand((), generator=g))))
        # Paint far (mostly large) objects first: small ones usually stay visible, not always.
        order = sorted(range(n), key=lambda i: -depth[i])
        return [objs[i] for i in order], bg, None

    def _extras(self, indices: Sequence[int], objs: _Objects) -> dict[str, torch.Tensor]:
        """Camouflage and depth draws for a batch, stacked and padded like ``objs``."""
        b, k = objs.cls.shape
        h, w = self.size
        n_per_scene = objs.active.sum(1).tolist()
        out = {
            "camo": torch.zeros(b, k, dtype=torch.bool),
            "tint": torch.zeros(b, k, 3),
            "gap": torch.zeros(b, k),
            "floor": torch.zeros(b, 2),
            "holes": torch.zeros(b, 1, _HOLES_GRID, _HOLES_GRID),
            "noise": torch.zeros(b, h, w),
        }
        for s, (i, n) in enumerate(zip(indices, n_per_scene, strict=True)):
            g = torch.Generator().manual_seed(
                _sample_seed(self.seed, self.split, int(i), f"{self._kind}/extras")
            )
            for key, value in _draw_extras(g, n, self.camouflage).items():
                if key in ("camo", "tint", "gap"):  # per object: fill the first n slots
                    out[key][s, :n] = value
                else:
                    out[key][s] = value
            if self.depth:  # pixel-level, last: the draws above do not depend on the size
                out["noise"][s] = self.depth_noise * torch.randn(h, w, generator=g)
        return out

    @_single_threaded
    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """Render several scenes at once, stacked as the items are: ``(images (B, C, H, W),
        labels (B, H, W))`` and, with ``geometry``, ``geo (B, H, W)``; ``C`` is 4 with
        ``depth``, 3 without."""
        indices = list(indices)
        objs, bg, noise, _ = self._scenes(indices)
        extras = None
        if self.depth or self.camouflage > 0:
            extras = self._extras(indices, objs)
            objs.camo, objs.tint = extras["camo"], extras["tint"]
        img, label, inst = _render(objs, bg, noise, *self.size, self.void_width)
        if self.depth:
            depth = _depth_map(objs, inst, extras, extras["noise"], holes=self.depth_holes)
            img = torch.cat([img, depth / MAX_DEPTH], 1)  # (B, 4, H, W)
        if self.geometry:
            return img, label, _geo_labels(objs, inst, label)
        return img, label

    def _options_repr(self) -> str:
        opts = []
        if self.geometry:
            opts.append("geometry=True")
        if self.depth:
            opts.append("depth=True")
        if self.camouflage:
            opts.append(f"camouflage={self.camouflage}")
        return "".join(", " + o for o in opts)


class ShapesClassification(_SyntheticBase):
    """One object per image, its class as the target: the lab bench's stand-in for ImageNet.

    Small backbones are pre-trained on these crops before they are turned into FCNs, just as
    the paper starts from ImageNet classifiers. The object is roughly centred and fills a good
    part of the crop, on the same cluttered backgrounds as the scenes.

    Args:
        split, seed, length, void_width, noise: as for :class:`ShapesDataset`.
        size: crop size (default 64).
        radius: object radius range as a fraction of the crop side.

    Items are ``(image float32 (3, H, W), target int64 ())`` with the target in
    ``0..5`` indexing :data:`OBJECT_CLASSES` (there is no background class).
    """

    _kind = "crops"
    classes = OBJECT_CLASSES
    n_classes = len(OBJECT_CLASSES)

    def __init__(
        self,
        split: str = "train",
        *,
        size: int | Sequence[int] = 64,
        seed: int = 0,
        length: int | None = None,
        radius: tuple[float, float] = (0.22, 0.42),
        noise: float = 0.03,
    ) -> None:
        super().__init__(split, size=size, seed=seed, length=length, void_width=0, noise=noise)
        rlo, rhi = radius
        if not 0 < rlo <= rhi:
            raise ValueError(f"radius must be a range (lo, hi) with 0 < lo <= hi, got {radius}")
        self.radius = (float(rlo), float(rhi))

    def _layout(self, g):
        bg = _draw_background(g)
        cls = int(torch.randint(len(OBJECT_CLASSES), (), generator=g))
        cx, cy = (0.5 + 0.16 * (torch.rand(2, generator=g) - 0.5)).tolist()
        r = self.radius[0] + (self.radius[1] - self.radius[0]) * float(torch.rand((), generator=g))
        obj = _draw_object(g, cls=cls, cx=cx, cy=cy, radius=r, bg_base=bg["base"])
        return [obj], bg, cls

    @_single_threaded
    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Render several crops at once: ``(images (B, 3, H, W), targets (B,))``."""
        img, _, targets = self._render_batch(list(indices))
        return img, torch.tensor(targets, dtype=torch.int64)

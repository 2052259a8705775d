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

Scenes are generated on the fly, deterministically: sample ``i`` of a given ``seed``, split and
configuration is the same tensor on every call and machine, alone or in any batch. A scene's
layout does not depend on the image size, so one scene can be rendered at several resolutions.

>>> ds = ShapesDataset("train", size=64)
>>> image, label = ds[0]
>>> image.shape, image.dtype, label.shape, label.dtype
(torch.Size([3, 64, 64]), torch.float32, torch.Size([64, 64]), torch.int64)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "CLASSES",
    "IGNORE_INDEX",
    "OBJECT_CLASSES",
    "SPLITS",
    "ShapesClassification",
    "ShapesDataset",
]

IGNORE_INDEX = 255
OBJECT_CLASSES = ("disc", "square", "triangle", "ring", "cross", "bar")
CLASSES = ("background", *OBJECT_CLASSES)  # label c is CLASSES[c]; 255 is void
SPLITS = ("train", "val", "test")
_DEFAULT_LENGTH = {"train": 2000, "val": 200, "test": 200}


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint a batch of scenes. Returns images (B, 3, H, W) in [0, 1] and labels (B, H, W)."""
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
    return img, label


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

    def _render_batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list]:
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
        img, label = _render(
            _stack_objects(objects, k), bg, torch.stack(noises), h, w, self.void_width
        )
        return img, label, targets

    def materialize(self, *, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as two tensors (images, targets), generated in batches.

        On the lab bench a split fits in memory; training from these tensors skips all per-item
        overhead.
        """
        parts = [
            self.batch(range(s, min(s + batch_size, self.length)))
            for s in range(0, self.length, batch_size)
        ]
        if not parts:
            raise ValueError("cannot materialise an empty dataset (length=0)")
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            index += self.length
        img, target = self.batch([index])
        return img[0], target[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # DataLoader calls this with a whole batch of indices: render them vectorised.
        img, target = self.batch(indices)
        return list(zip(img, target, strict=True))

    def __repr__(self) -> str:
        h, w = self.size
        return (
            f"{type(self).__name__}(split={self.split!r}, size=({h}, {w}), seed={self.seed}, "
            f"length={self.length})"
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

    Items are ``(image, label)``: ``image`` float32 ``(3, H, W)`` in ``[0, 1]``, ``label``
    int64 ``(H, W)`` with values in ``0..6`` (see :data:`CLASSES`) and ``255`` for void.

    >>> ds = ShapesDataset("val", size=(48, 80), length=4)
    >>> images, labels = ds.batch([0, 1, 2, 3])  # vectorised: (4, 3, 48, 80), (4, 48, 80)
    >>> bool((labels[labels != 255] < len(ds.classes)).all())
    True
    """

    _kind = "scenes"
    classes = CLASSES
    n_classes = len(CLASSES)
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

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Render several scenes at once: ``(images (B, 3, H, W), labels (B, H, W))``."""
        img, label, _ = self._render_batch(list(indices))
        return img, label


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

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Render several crops at once: ``(images (B, 3, H, W), targets (B,))``."""
        img, _, targets = self._render_batch(list(indices))
        return img, torch.tensor(targets, dtype=torch.int64)

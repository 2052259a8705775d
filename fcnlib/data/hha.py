"""HHA: Gupta et al.'s encoding of a depth map as three image-like channels.

The paper's best NYUDv2 net reads depth not as metres but as HHA: horizontal disparity, height
above the ground, and the angle between each pixel's surface normal and gravity, each scaled to
0..255 so that an ImageNet-style net can take it like a colour image. :func:`hha` computes it
from a depth map and the camera's :class:`Intrinsics`; gravity is estimated from the normals
(or given, :data:`LEVEL` for a level camera).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LEVEL", "NYUD_INTRINSICS", "Intrinsics", "hha"]


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera's intrinsics in pixels: focal lengths ``fx``, ``fy``, principal point
    ``cx``, ``cy`` (column and row of the optical axis, 0 = first pixel's centre)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def crop(self, top: int, left: int) -> Intrinsics:
        """The intrinsics of the image cropped to start at row ``top``, column ``left``."""
        return Intrinsics(self.fx, self.fy, self.cx - left, self.cy - top)


LEVEL = (0.0, 1.0, 0.0)  # gravity as seen by a level camera: straight down its y axis

# The NYU Depth V2 toolbox's RGB camera (camera_params.m; Gupta et al.'s getCameraParam('color')),
# for the full 640x480 frame. Gupta et al. crop their images; use .crop() for a cropped frame.
NYUD_INTRINSICS = Intrinsics(
    fx=5.1885790117450188e02, fy=5.1946961112127485e02,
    cx=3.2558244941119034e02, cy=2.5373616633400465e02,
)  # fmt: skip


def _back_project(z: torch.Tensor, k: Intrinsics) -> torch.Tensor:
    """Depth (H, W) -> camera-frame points (3, H, W): x right, y down, z forward, z's units."""
    h, w = z.shape
    v, u = torch.meshgrid(
        torch.arange(h, dtype=z.dtype), torch.arange(w, dtype=z.dtype), indexing="ij"
    )
    return torch.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z])


def _normals(points: torch.Tensor, valid: torch.Tensor, radius: int) -> torch.Tensor:
    """Unit surface normals (3, H, W) by a least-squares plane through each (2r+1)^2 window of
    valid points, oriented away from the camera (n . p >= 0); NaN where no plane is defined.

    A plane n . p = d is, divided by z, n . (x/z, y/z, 1) = d / z: linear in a = (x/z, y/z, 1)
    with target 1/z, so the normal equations need only window sums of a a^T and a / z (box
    filters), as Gupta et al.'s computeNormalsSquareSupport.
    """
    x, y, z = points
    z_safe = torch.where(valid, z, torch.ones_like(z))
    a = torch.stack([x / z_safe, y / z_safe, torch.ones_like(z)]) * valid  # (3, H, W), 0 if invalid
    target = valid / z_safe  # (H, W)
    terms = torch.cat([(a[:, None] * a[None]).flatten(0, 1), a * target])  # (12, H, W)
    size = 2 * radius + 1  # window means: the same solution as sums
    sums = F.avg_pool2d(terms[None], size, stride=1, padding=radius, count_include_pad=True)[0]
    ata = sums[:9].permute(1, 2, 0).unflatten(-1, (3, 3))  # (H, W, 3, 3)
    atb = sums[9:].permute(1, 2, 0)  # (H, W, 3)
    c0, c1, c2 = ata.unbind(-1)  # columns; adj(A) has rows c1 x c2, c2 x c0, c0 x c1
    adjugate = torch.stack([c1.cross(c2, dim=-1), c2.cross(c0, dim=-1), c0.cross(c1, dim=-1)], -2)
    det = (c0 * c1.cross(c2, dim=-1)).sum(-1)
    n = (adjugate @ atb[..., None])[..., 0]  # A^-1 b times det >= 0: the normal's direction
    scale = ata.diagonal(dim1=-2, dim2=-1).sum(-1) ** 3
    n = n / n.norm(dim=-1, keepdim=True)
    n[~(valid & (det > 1e-15 * scale))] = math.nan  # fewer than 3 non-collinear points
    n = n.permute(2, 0, 1)  # (3, H, W)
    away = (n * points).sum(0, keepdim=True) >= 0
    return torch.where(away, n, -n)


def _gravity(normals: torch.Tensor) -> torch.Tensor:
    """Gravity's direction (3,), pointing down in the camera frame, as Gupta et al.'s getYDir:
    starting from the camera's y axis, repeatedly call normals within 45 degrees (then 15) of it
    "floor" and those within 45 (then 15) degrees of perpendicular "wall", and take the direction
    most parallel to the floors and most perpendicular to the walls: the eigenvector of
    sum(wall n n^T) - sum(floor n n^T) with the smallest eigenvalue, signed to agree with the
    previous estimate. Five rounds at each angle. Where that eigenvector is not unique (no floor
    in view), the tied direction nearest the previous estimate is kept: Gupta et al.'s code
    takes an arbitrary one."""
    n = normals.flatten(1).T  # (H*W, 3)
    n = n[torch.isfinite(n).all(1)]
    g = torch.tensor([0.0, 1.0, 0.0], dtype=normals.dtype)
    for angle, rounds in ((45.0, 5), (15.0, 5)):
        for _ in range(rounds):
            cos = (n @ g).abs()
            floor = n[cos > math.cos(math.radians(angle))]
            wall = n[cos < math.sin(math.radians(angle))]
            if len(floor) + len(wall) == 0:
                return g
            values, vectors = torch.linalg.eigh(wall.T @ wall - floor.T @ floor)
            # Of the directions tied for the smallest eigenvalue (a scene with walls only leaves
            # a whole plane of them), the one nearest the current estimate, pointing its way.
            tied = vectors[:, values <= values[0] + 1e-9 * values.abs().max()]  # (3, k)
            new = tied @ (tied.T @ g)
            g = new / new.norm() if new.norm() > 1e-9 else vectors[:, 0]
    return g


def hha(
    depth: torch.Tensor | np.ndarray,
    intrinsics: Intrinsics = NYUD_INTRINSICS,
    *,
    gravity: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Gupta et al.'s HHA encoding of a depth image (ECCV 2014): float32 (3, H, W) in [0, 1].

    Args:
        depth: (H, W) depth in metres, along the optical axis; 0 or NaN = no reading.
        intrinsics: the camera's, in pixels of this image (:data:`NYUD_INTRINSICS`, for the
            full 640x480 NYUDv2 frame, by default).
        gravity: the downward direction in the camera frame (x right, y down, z forward).
            ``None`` (default): estimated from the surface normals as Gupta et al. do
            (iteratively, see ``_gravity``). :data:`LEVEL`, ``(0, 1, 0)``, assumes a level
            camera: a simplification, exact for a camera held level.

    The channels follow Gupta et al.'s saveHHA.m, each rounded to 0..255 (saturating) and
    divided by 255, so that the result equals what an HHA PNG decodes to:

    0. horizontal disparity ``31000 / depth in cm``, depth clamped to >= 1 m: 255 up to about
       1.22 m, 103 at 3 m, 31 at 10 m;
    1. height above the lowest point in cm (0..255 cm), along gravity; if that point is less
       than 90 cm below the camera, the ground is taken to be 130 cm below it;
    2. the angle between the surface normal (from a 7x7 window; gravity uses 21x21) and
       gravity in degrees, plus 38: 38 for floors, 128 for walls, 218 for ceilings.

    Pixels without depth are 0 in all three channels, pixels without a normal in the third.
    Where this differs from Gupta et al.'s code: their NYUDv2 depth has its holes filled (only
    the normals skip the sensor's missing pixels); their pixels are numbered from 1, with the
    same ``cx``, ``cy`` (a one-pixel shift); ties in the gravity estimate (see ``_gravity``).

    >>> depth = torch.full((24, 32), 3.0)  # a wall 3 m in front of the camera
    >>> k = Intrinsics(fx=32.0, fy=32.0, cx=15.5, cy=11.5)
    >>> (hha(depth, k)[:, 12, 16] * 255).tolist()  # 3 m; 103 cm above the lowest point; 90 + 38
    [103.0, 103.0, 128.0]
    """
    z = torch.as_tensor(depth, dtype=torch.float64) * 100  # cm, the units of Gupta et al.'s code
    if z.dim() != 2:
        raise ValueError(f"depth must be (H, W) in metres, got shape {tuple(z.shape)}")
    valid = torch.isfinite(z) & (z > 0)
    z = torch.where(valid, z, torch.zeros_like(z))
    points = _back_project(z, intrinsics)  # (3, H, W) cm
    if gravity is None:
        g = _gravity(_normals(points, valid, radius=10))
    else:
        g = torch.as_tensor(gravity, dtype=torch.float64).flatten()
        if g.shape != (3,) or not g.norm() > 0:
            raise ValueError(f"gravity must be a non-zero 3-vector, got {gravity!r}")
        g = g / g.norm()
    down = g[:, None, None]
    cos = ((_normals(points, valid, radius=3) * down).sum(0)).clamp(-1, 1)
    angle = torch.rad2deg(torch.acos(cos))  # NaN where there is no normal
    height = -(points * down).sum(0)  # cm, up
    lowest = float(height[valid].min()) if valid.any() else 0.0
    lowest = -130.0 if lowest > -90.0 else lowest
    disparity = 31000.0 / z.clamp(min=100.0)
    channels = torch.stack([disparity, height - lowest, angle + 128 - 90])
    channels = torch.floor(channels.nan_to_num(0.0).clamp(0, 255) + 0.5)  # MATLAB's uint8()
    channels[:, ~valid] = 0
    return (channels / 255).float()

"""The data of Chapter 4's live explorer (book/_static/live/upsampling.js), computed in PyTorch.

The page draws; it computes nothing itself. Its sliders select among results computed here,
with PyTorch's ``F.conv_transpose2d`` and fcnlib's :func:`~fcnlib.upsample.bilinear_kernel`
and :func:`~fcnlib.upsample.shift_and_stitch`:

- **transposed convolution** for every stride ``s`` in 1..4 and kernel size ``k`` in 1..8
  (padding 0) on a constant input (``6 x 6``; ``9 x 9`` at stride 1), with an all-ones kernel
  (the output counts the kernel copies that land on each pixel: a checkerboard exactly when
  ``k % s != 0``) and, where
  ``(k + 1) // 2 == s``, the bilinear kernel of factor ``s`` (a flat interior); the output window
  each input cell scatters to (``conv_transpose2d`` of a one-hot input);
- **shift-and-stitch** of a stride-8 lab net on one scene: the dense labels of the 64 shifted
  copies, the copy and cell each pixel comes from, the order in which the page adds the copies,
  the net's own (bilinear) labels and its coarse stride-8 labels.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fcnlib.data.labels import IGNORE_INDEX, voc_palette
from fcnlib.data.shapes import CLASSES
from fcnlib.export import write_files_script
from fcnlib.modes import eval_mode
from fcnlib.upsample import bilinear_kernel, shift_and_stitch, stitch_sources, upsample_params

FORMAT = "fcnlib-live-upsampling/1"
STRIDES = range(1, 5)
KERNELS = range(1, 9)
GRID = 6  # the deconvolution's input is at least GRID x GRID (see grid())
F_STITCH = 8  # the net's output stride: 64 shifted copies
SCORES = "fuse_pool3"  # the stride-8 scores, before the final upsampling
FLAT = 1e-6  # an interior is even when its values differ by no more than this
MAX_SIDE = 256  # the scene's largest side: the labels travel in the page's script


def interior(n: int, s: int, k: int) -> tuple[int, int]:
    """First and last output row of ``conv_transpose2d`` (stride ``s``, kernel ``k``, padding 0)
    of an ``n``-row input whose every kernel tap has an input row: the rows a larger input
    would give the same values. Output row ``o`` reads input rows ``i`` with
    ``0 <= o - s i < k``; all of them exist for ``k - s <= o <= s n - 1``.

    >>> interior(6, 2, 3)  # the output has 2 * 5 + 3 = 13 rows; rows 0 and 12 miss a tap
    (1, 11)
    """
    return max(0, k - s), min(s * n - 1, s * (n - 1) + k - 1)


def grid(s: int) -> int:
    """The side of the deconvolution's input at stride ``s``: at least :data:`GRID`, and large
    enough for the interior to hold two periods (``2 s`` rows) at the largest kernel.

    >>> [grid(s) for s in STRIDES]
    [9, 6, 6, 6]
    """
    return max(GRID, -(-(max(KERNELS) + s) // s))  # b - a + 1 = s n - k + s >= 2 s


def _weights(kind: str, k: int) -> torch.Tensor:
    kernel = torch.ones(k, k) if kind == "ones" else bilinear_kernel(k)
    return kernel.double()[None, None]  # (1, 1, k, k): exact counts and tents in float64


def _deconv_case(kind: str, s: int, k: int) -> dict[str, Any]:
    weight, n = _weights(kind, k), grid(s)
    out = F.conv_transpose2d(torch.ones(1, 1, n, n, dtype=torch.float64), weight, stride=s)
    out = out[0, 0]  # (s (n - 1) + k, same)
    a, b = interior(n, s, k)
    inside = out[a : b + 1, a : b + 1]
    footprints = []  # [top, left, bottom, right] of each input cell's window, row by row
    for cell in range(n * n):
        hot = torch.zeros(n * n, dtype=torch.float64)
        hot[cell] = 1
        spread = F.conv_transpose2d(hot.view(1, 1, n, n), weight, stride=s)[0, 0]
        rows, cols = spread.nonzero(as_tuple=True)
        footprints.append([int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())])
    return {
        "grid": n,
        "output": [[round(v, 6) for v in row] for row in out.tolist()],
        "interior": [a, b],
        "min": round(inside.min().item(), 6),
        "max": round(inside.max().item(), 6),
        "interiorEven": bool(inside.max() - inside.min() <= FLAT),
        "footprints": footprints,
        "kernel": [[round(v, 6) for v in row] for row in weight[0, 0].tolist()],
    }


def deconv_cases() -> dict[str, dict[str, dict[str, Any]]]:
    """``{"s,k": {"ones": case, "bilinear": case}}``, "bilinear" only where its factor
    ``(k + 1) // 2`` is ``s``. A case: ``output`` (rows of the transposed convolution of an
    all-ones input of side ``grid``, :func:`grid`), ``interior`` (its first and last row and
    column, :func:`interior`), its ``min`` and ``max``, ``interiorEven``, ``footprints`` (each
    input cell's output window: top, left, bottom, right) and ``kernel``."""
    cases = {}
    for s in STRIDES:
        for k in KERNELS:
            kinds = ("ones", "bilinear") if (k + 1) // 2 == s else ("ones",)
            cases[f"{s},{k}"] = {kind: _deconv_case(kind, s, k) for kind in kinds}
    return cases


def copy_order(f: int) -> list[list[int]]:
    """The ``f**2`` copies ``[dy, dx]`` in the order the page adds them: coarse to fine, so that
    every prefix spreads evenly over the image (the shift's bits reversed, as in interlaced
    images).

    >>> copy_order(2)
    [[0, 0], [1, 1], [0, 1], [1, 0]]
    """
    bits = (f - 1).bit_length()
    if 1 << bits != f:
        raise ValueError(f"f must be a power of 2, got {f}")

    def reverse(v: int) -> int:
        return int(f"{v:0{bits}b}"[::-1], 2) if bits else 0

    def rank(copy: tuple[int, int]) -> tuple[int, int, int]:
        dy, dx = reverse(copy[0]), reverse(copy[1])
        return (max(dy, dx), dy != dx, dy * f + dx)  # the diagonal of each level first

    copies = [(dy, dx) for dy in range(f) for dx in range(f)]
    return [list(c) for c in sorted(copies, key=rank)]


def _check_image(image: Any) -> torch.Tensor:
    image = torch.as_tensor(image)
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(
            f"image must be a uint8 RGB tensor (3, H, W), got {image.dtype} of shape "
            f"{tuple(image.shape)}; from a [0, 1] float scene: (x * 255).round().to(torch.uint8)"
        )
    h, w = image.shape[-2:]
    if h % F_STITCH or w % F_STITCH or not (F_STITCH <= h <= MAX_SIDE and w <= MAX_SIDE):
        raise ValueError(
            f"the scene's sides must be multiples of {F_STITCH} from {F_STITCH} to {MAX_SIDE} "
            f"(each shifted copy fills one pixel in every {F_STITCH} x {F_STITCH} block), got "
            f"{h} x {w}; crop or resize it, e.g. ShapesDataset(..., size=128)"
        )
    return image


def _check_net(net: Any) -> None:
    stride = getattr(net, "stride", None)
    if stride != F_STITCH or not hasattr(net, "score_maps"):
        raise ValueError(
            f"net must be an fcnlib FCN of output stride {F_STITCH} (FCN-8s), got "
            f"{type(net).__name__} of stride {stride}; e.g. fcnlib.models.fcn('tiny_vgg', "
            f"n_classes=7, stride=8, pretrained=True)"
        )


def stitch_case(net: torch.nn.Module, image: torch.Tensor) -> dict[str, Any]:
    """Shift-and-stitch of ``net``'s stride-8 scores on ``image`` (uint8 (3, H, W)), next to
    its bilinear output: class-id label maps (row by row) and each pixel's source."""
    _check_net(net)
    image = _check_image(image)
    x = image[None].float() / 255  # (1, 3, H, W), what a PNG of the scene gives back
    h, w = x.shape[-2:]

    def coarse_scores(t: torch.Tensor) -> torch.Tensor:
        return net.score_maps(t)[SCORES]  # (B, K, h/8, w/8)

    with eval_mode(net), torch.no_grad():
        coarse = coarse_scores(x).argmax(1)[0]  # (H/8, W/8)
        dense = shift_and_stitch(coarse_scores, x, F_STITCH).argmax(1)[0]  # (H, W)
        bilinear = net(x).argmax(1)[0]  # (H, W)
    sources = stitch_sources(F_STITCH, (h, w))  # (H, W, 4): dy, dx, i, j
    flat = {
        name: sources[..., c].flatten().tolist() for c, name in enumerate(("dy", "dx", "i", "j"))
    }
    return {
        "size": [h, w],
        "f": F_STITCH,
        "scores": SCORES,
        "coarseSize": list(coarse.shape),
        "coarse": coarse.flatten().tolist(),
        "dense": dense.flatten().tolist(),
        "bilinear": bilinear.flatten().tolist(),
        "agree": int((dense == bilinear).sum()),
        "sources": flat,
        "order": copy_order(F_STITCH),
    }


def _fallback_figure(cases: dict, stitch: dict, image: torch.Tensor) -> Any:
    """Two checkerboards and the shift-and-stitch panels as one PNG (matplotlib, Agg)."""
    from matplotlib.figure import Figure

    palette = voc_palette().numpy()
    h, w = stitch["size"]
    shown = [
        ("ones, s = 2, k = 3", cases["2,3"]["ones"]),
        ("ones, s = 2, k = 4", cases["2,4"]["ones"]),
        ("bilinear, s = 2, k = 4", cases["2,4"]["bilinear"]),
    ]
    figure = Figure(figsize=(14, 2.6), dpi=80)
    axes = figure.subplots(1, 7)
    for ax, (title, case) in zip(axes, shown, strict=False):
        ax.imshow(case["output"], cmap="Blues", vmin=0)
        even = "even interior" if case["interiorEven"] else "checkerboard"
        ax.set_title(f"{title}\n{even}", fontsize=9)
    labels = [
        ("scene", image.permute(1, 2, 0).numpy()),
        ("shift-and-stitch\n(64 copies)", palette[torch.tensor(stitch["dense"]).view(h, w)]),
        ("bilinear\n(the net's output)", palette[torch.tensor(stitch["bilinear"]).view(h, w)]),
        ("coarse, stride 8", palette[torch.tensor(stitch["coarse"]).view(*stitch["coarseSize"])]),
    ]
    for ax, (title, picture) in zip(axes[3:], labels, strict=True):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def write_upsampling_assets(folder: str | os.PathLike, net: torch.nn.Module, image: Any) -> Path:
    """Write the explorer's data into ``folder``: ``upsampling.js`` (one script holding
    ``upsampling.json`` and ``upsampling/scene.png``, :func:`fcnlib.export.write_files_script`)
    and ``upsampling-fallback.png`` (a static figure for pages that cannot run it). Returns
    the script's path.

    ``net``: an fcnlib FCN of output stride 8 (lab classes); ``image``: a lab scene, uint8
    ``(3, H, W)``, sides multiples of 8 up to 256. upsampling.json holds ``format``,
    ``classes``, ``colors`` (VOC's, one RGB per class), ``void``, ``fcnKernels`` (the kernel
    size :func:`~fcnlib.upsample.upsample_params` gives each stride), ``deconv``
    (:func:`deconv_cases`) and ``stitch`` (:func:`stitch_case`). Label maps hold class ids,
    void 255. About 64 kB for a 128 x 128 scene. For the book::

        net = fcn("tiny_vgg", n_classes=7, stride=8, pretrained=True)  # or a trained FCN-8s
        scene = ShapesDataset("test", size=128, length=1, seed=0)[0][0]
        write_upsampling_assets("book/_static/live/models", net, (scene * 255).round().byte())
    """
    from PIL import Image

    _check_net(net)
    image = _check_image(image)
    cases = deconv_cases()
    stitch = stitch_case(net, image)
    palette = voc_palette()
    data = {
        "format": FORMAT,
        "classes": list(CLASSES),
        "colors": palette[: len(CLASSES)].tolist(),
        "void": {"id": IGNORE_INDEX, "color": palette[IGNORE_INDEX].tolist()},
        "strides": list(STRIDES),
        "kernels": list(KERNELS),
        "fcnKernels": {str(s): upsample_params(s)[0] for s in STRIDES},
        "deconv": cases,
        "stitch": stitch | {"image": "upsampling/scene.png"},
    }
    scene = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(scene, format="png")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "upsampling-fallback.png").write_bytes(_fallback_figure(cases, stitch, image))
    files = {
        "upsampling.json": json.dumps(data, separators=(",", ":")).encode(),
        "upsampling/scene.png": scene.getvalue(),
    }
    return write_files_script(folder / "upsampling.js", files)

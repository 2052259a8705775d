"""The data of Chapter 3's live receptive-field explorer (``book/_static/live/fields.js``).

For one lab FCN and one scene, :func:`write_fields_assets` writes what the page needs to show,
for any output unit of pool1 .. pool5 and fc7, the unit's analytic receptive field (the box of
:func:`fcnlib.receptive_field.receptive_field`) and its effective field: the magnitude of the
gradient of the unit (its channels summed) with respect to the input pixels, computed here with
autograd, since a page without a kernel cannot. The page only places each box at
``offset + unit * stride`` (the definition of :class:`~fcnlib.receptive_field.LayerRF`) and
draws the stored maps.

Every gradient is checked against the geometry while it is computed: it must be exactly zero
outside the unit's analytic box. The maps are then stored cropped to that box, which is what
keeps the whole explorer under 1.5 MB for a 128 x 128 scene.

>>> import tempfile
>>> from fcnlib.data import ShapesDataset
>>> from fcnlib.models import fcn
>>> net = fcn("tiny_vgg", n_classes=7, stride=8, pretrained=True)
>>> image = (ShapesDataset("test", size=64, length=1)[0][0] * 255).round().to(torch.uint8)
>>> with tempfile.TemporaryDirectory() as tmp:
...     print(write_fields_assets(tmp, net, image).name)
fields.js
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fcnlib._io import atomic_write
from fcnlib.export import write_files_script
from fcnlib.modes import eval_mode
from fcnlib.receptive_field import LayerRF, receptive_field

if TYPE_CHECKING:
    from fcnlib.models import FCN

__all__ = ["FIELDS_FORMAT", "MASS", "write_fields_assets"]

FIELDS_FORMAT = "fcnlib-live-fields/1"  # fields.json's "format": the page checks it
MASS = 0.9  # the share of the gradient whose footprint the page reports


def _check(net: Any, image: Any) -> None:
    features, fc = getattr(net, "features", None), getattr(net, "fc", None)
    if not isinstance(features, (nn.ModuleDict, Mapping)) or not isinstance(fc, nn.Module):
        raise ValueError(
            f"write_fields_assets needs an FCN of fcnlib.models (a `features` dict of stages and "
            f"an `fc` head), got {type(net).__name__}; build one with "
            "fcnlib.models.fcn('tiny_vgg', n_classes=7)"
        )
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.dim() != 3:
        what = (
            f"{image.dtype} {tuple(image.shape)}"
            if isinstance(image, torch.Tensor)
            else type(image).__name__
        )
        raise ValueError(
            f"image must be a uint8 tensor (3, H, W), RGB 0..255 as a PNG holds it; got {what}. "
            "From a float image in [0, 1]: (image * 255).round().to(torch.uint8)"
        )
    if image.shape[0] != 3 or min(image.shape[1:]) < 1:
        raise ValueError(f"image must be (3, H, W) with H, W >= 1, got {tuple(image.shape)}")


def _layers(net: FCN) -> tuple[list[nn.Module], list[tuple[str, LayerRF, int]]]:
    """The chain input -> fc7 as its leaf layers, and the layers offered: (name, geometry, index
    of the leaf whose output the unit reads). Pools are pool1, pool2, ... in order; the head's
    last convolution is fc6, fc7, ... counted on from the pools, read after its ReLU."""
    chain = nn.Sequential(*net.features.values(), net.fc)  # Chapter 3's up_to_fc7
    leaves = [(n, m) for n, m in chain.named_modules() if next(m.children(), None) is None]
    names = [n for n, _ in leaves]
    rf = {axis: {r.name: r for r in receptive_field(chain, axis=axis)} for axis in (-2, -1)}
    for name, r in rf[-1].items():
        if rf[-2][name] != r:
            raise ValueError(
                f"layer {name!r} has a different geometry down and across ({rf[-2][name]} vs "
                f"{r}): the explorer draws square fields only"
            )
    pools = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.MaxPool2d)]
    head = [i for i, (n, m) in enumerate(leaves) if isinstance(m, nn.Conv2d)]
    head = [i for i in head if names[i].startswith(f"{len(net.features)}.")]  # inside net.fc
    if not head:
        raise ValueError("the net's fc head has no convolution: there is no fc7 to explore")
    offered = [(f"pool{k + 1}", rf[-1][names[i]], i) for k, i in enumerate(pools)]
    last = head[-1]
    while last + 1 < len(leaves) and isinstance(leaves[last + 1][1], nn.ReLU):
        last += 1  # fc7 as the next layer reads it: rectified
    offered.append((f"fc{len(pools) + len(head)}", rf[-1][names[head[-1]]], last))
    return [m for _, m in leaves], offered


def _box(rf: LayerRF, unit: int) -> int:
    """First input pixel of the unit's analytic field along one axis (``size`` pixels long,
    centred on ``offset + unit * stride``)."""
    first = Fraction(rf.offset) + unit * Fraction(rf.stride) - Fraction(rf.size - 1) / 2
    if first.denominator != 1:
        raise ValueError(
            f"a field of {rf.size:g} pixels centred on {float(first) + (rf.size - 1) / 2:g} "
            "starts between two pixels: the explorer needs whole-pixel boxes"
        )
    return int(first)


def _gradients(
    prefix: nn.Module, net: FCN, inputs: torch.Tensor, rf: LayerRF, grid: tuple[int, int]
) -> tuple[torch.Tensor, list[list[int]]]:
    """|d unit / d input|, channels summed, for every unit of a (rows, cols) grid: groups of
    units whose boxes are at least a pixel apart share one backward pass.

    Returns the maps (G, H, W) of the groups and, for each unit in row order, its group. A
    unit's map is its group's map inside its own box: the other units of the group reach
    only their own boxes, which this function checks (RuntimeError otherwise)."""
    rows, cols = grid
    h, w = inputs.shape[-2:]
    step = math.ceil((rf.size + 1) / rf.stride)  # units this far apart have disjoint boxes
    gr, gc = min(step, rows), min(step, cols)
    mask = torch.zeros(gr * gc, 1, rows, cols)  # (G, 1, rows, cols): each group's units
    group = [[(i % gr) * gc + j % gc for j in range(cols)] for i in range(rows)]
    for i in range(rows):
        for j in range(cols):
            mask[group[i][j], 0, i, j] = 1
    n = len(inputs)
    x = inputs.repeat_interleave(gr * gc, 0).requires_grad_()  # (n * G, 3, H, W)
    with eval_mode(net), torch.enable_grad():
        out = prefix(net.normalize(x))  # (n * G, C, rows, cols)
        if tuple(out.shape[-2:]) != grid:
            raise RuntimeError(f"the layer's grid is {tuple(out.shape[-2:])}, expected {grid}")
        (grad,) = torch.autograd.grad((out * mask.to(out.device).repeat(n, 1, 1, 1)).sum(), x)
    maps = grad.abs().sum(1).view(n, gr * gc, h, w).mean(0).cpu()  # (G, H, W)
    inside = torch.zeros(gr * gc, h, w, dtype=torch.bool)
    for i in range(rows):
        for j in range(cols):
            top, left = _box(rf, i), _box(rf, j)
            size = int(rf.size)
            inside[group[i][j], max(top, 0) : top + size, max(left, 0) : left + size] = True
    leak = (maps > 0) & ~inside
    if leak.any():
        _, y, x_ = (int(v) for v in leak.nonzero()[0])
        raise RuntimeError(
            f"the gradient of a unit reaches input pixel ({y}, {x_}), outside its analytic "
            f"field ({rf.size:g} px, stride {rf.stride:g}, offset {rf.offset:g}): "
            "receptive_field's geometry does not describe this net"
        )
    return maps, group


def _footprint(tile: torch.Tensor, area: int) -> float | None:
    """The share of ``area`` pixels that the fewest pixels holding MASS of ``tile`` take."""
    values = tile.flatten().double().sort(descending=True).values
    total = float(values.sum())
    if total <= 0:
        return None
    count = int(torch.searchsorted(values.cumsum(0), MASS * total)) + 1
    return round(min(count, area) / area, 4)


def _png(array: torch.Tensor) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.numpy()).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _layer_maps(
    leaves: list[nn.Module],
    net: FCN,
    inputs: torch.Tensor,
    name: str,
    rf: LayerRF,
    end: int,
) -> tuple[dict, torch.Tensor]:
    """One layer's entry of fields.json and its atlas (uint8, rows * size x cols * size): the
    tile of unit (i, j) at row i, column j holds its map over the unclipped analytic box, 0
    where the box leaves the image, 255 at the unit's own maximum."""
    prefix = nn.Sequential(*leaves[: end + 1])
    h, w = inputs.shape[-2:]
    with torch.no_grad(), eval_mode(net):
        rows, cols = prefix(net.normalize(inputs[:1])).shape[-2:]
    maps, group = _gradients(prefix, net, inputs, rf, (rows, cols))
    size = int(rf.size)
    atlas = torch.zeros(rows * size, cols * size, dtype=torch.uint8)
    footprint, empty = [], 0
    for i in range(rows):
        top = _box(rf, i)
        y0, y1 = max(top, 0), min(top + size, h)
        for j in range(cols):
            left = _box(rf, j)
            x0, x1 = max(left, 0), min(left + size, w)
            crop = maps[group[i][j], y0:y1, x0:x1]  # the box, clipped to the image
            peak = float(crop.max())
            footprint.append(_footprint(crop, crop.numel()))
            if peak <= 0:
                empty += 1
                continue
            tile = atlas[i * size : (i + 1) * size, j * size : (j + 1) * size]
            scaled = (crop / peak * 255).round().to(torch.uint8)
            tile[y0 - top : y1 - top, x0 - left : x1 - left] = scaled
    entry = {
        "name": name,
        "kind": rf.kind,
        "module": rf.name,
        "size": rf.size,
        "stride": rf.stride,
        "offset": rf.offset,
        "grid": [rows, cols],
        "tile": size,
        "atlas": f"fields-{name}.png",
        "mass": footprint,  # per unit, row by row: share of the clipped box; null: no gradient
        "empty": empty,
    }
    return entry, atlas


_DIM = 0.55  # the scene is dimmed under the heat, in the page too, for the heat to show
_HEAT = ((0, 0, 4), (80, 18, 123), (183, 55, 121), (252, 137, 97), (252, 253, 191))


def _heat(values: torch.Tensor) -> torch.Tensor:
    """(..., 3) uint8 colours for values in [0, 1]: a dark-purple-orange-yellow ramp, the
    page's (fields.js)."""
    stops = torch.tensor(_HEAT, dtype=torch.float32)
    t = values.clamp(0, 1) * (len(_HEAT) - 1)
    low = t.floor().long().clamp(max=len(_HEAT) - 2)
    frac = (t - low)[..., None]
    return (stops[low] * (1 - frac) + stops[low + 1] * frac).round().to(torch.uint8)


def _fallback_figure(image: torch.Tensor, layers: list[dict], atlases: dict, picks: list[str]):
    """The scene with the field of the unit nearest its centre, for each layer of ``picks``,
    side by side (2x): heat where the gradient is, the analytic box clipped to the image."""
    from PIL import Image, ImageDraw

    zoom, gap, caption = 2, 10, 30
    h, w = image.shape[-2:]
    figure = Image.new("RGB", (len(picks) * (w * zoom + gap) - gap, h * zoom + caption), "white")
    draw = ImageDraw.Draw(figure)
    for k, name in enumerate(picks):
        layer = next(entry for entry in layers if entry["name"] == name)
        rf = LayerRF(
            layer["module"], layer["kind"], layer["size"], layer["stride"], layer["offset"]
        )
        rows, cols = layer["grid"]
        i = min(max(round((h / 2 - rf.offset) / rf.stride), 0), rows - 1)
        j = min(max(round((w / 2 - rf.offset) / rf.stride), 0), cols - 1)
        size, top, left = layer["tile"], _box(rf, i), _box(rf, j)
        tile = atlases[name][i * size : (i + 1) * size, j * size : (j + 1) * size]
        heat = torch.zeros(h, w)
        y0, y1, x0, x1 = max(top, 0), min(top + size, h), max(left, 0), min(left + size, w)
        heat[y0:y1, x0:x1] = tile[y0 - top : y1 - top, x0 - left : x1 - left].float() / 255
        heat = heat.sqrt()  # as the page: the square root shows the tails
        alpha = (0.85 * heat)[..., None]
        scene = image.permute(1, 2, 0).float() * _DIM
        mixed = (scene * (1 - alpha) + _heat(heat).float() * alpha).round().to(torch.uint8)
        panel = Image.fromarray(mixed.numpy()).resize((w * zoom, h * zoom), Image.NEAREST)
        x = k * (w * zoom + gap)
        figure.paste(panel, (x, 0))
        box = (x + x0 * zoom, y0 * zoom, x + x1 * zoom - 1, y1 * zoom - 1)
        draw.rectangle(box, outline=(0, 220, 255), width=2)
        centre = (
            x + (rf.offset + j * rf.stride + 0.5) * zoom,
            (rf.offset + i * rf.stride + 0.5) * zoom,
        )
        draw.ellipse([centre[0] - 3, centre[1] - 3, centre[0] + 3, centre[1] + 3], fill="white")
        draw.text(
            (x + 2, h * zoom + 3), f"{name}: unit ({i}, {j}), field {rf.size:.0f} px", fill="black"
        )
        clipped = (y0, x0, y1, x1) != (top, left, top + size, left + size)
        said = f", {y1 - y0} x {x1 - x0} inside the image" if clipped else ""
        draw.text((x + 2, h * zoom + 16), f"stride {rf.stride:.0f}{said}", fill="black")
    return figure


def write_fields_assets(
    folder: str | os.PathLike,
    net: FCN,
    image: torch.Tensor,
    *,
    noise: int = 0,
    seed: int = 0,
) -> Path:
    """Write the receptive-field explorer's data for ``net`` on ``image`` into ``folder``;
    return the path of ``fields.js``.

    ``net`` is a lab :class:`~fcnlib.models.FCN` (``features`` and ``fc``); the chain is
    ``nn.Sequential(*net.features.values(), net.fc)``, as Chapter 3's ``up_to_fc7``, after the
    net's input normalisation. ``image`` is uint8 ``(3, H, W)``, RGB as a PNG holds it. The
    layers offered are pool1 .. pool5 and fc7 (after its ReLU). For each, and each unit
    ``(i, j)`` of its output grid on the image, the effective field is
    ``|d out[:, :, i, j].sum() / d image|`` summed over RGB, in eval mode, on the scene itself
    (with ``noise`` > 0 averaged with that many seeded Gaussian images, as
    :func:`~fcnlib.receptive_field.empirical_receptive_field` does). A gradient that is not
    exactly zero outside the unit's analytic box raises RuntimeError: nothing is written.

    Written: ``fields.js``, one script (:func:`fcnlib.export.write_files_script`) holding

    - ``fields.json``: ``format`` (:data:`FIELDS_FORMAT`), ``size`` ``[H, W]``, ``inputs``
      (what the gradients were averaged over, in words), ``mass`` (:data:`MASS`), ``scene``
      and ``layers``: for each, ``name``, ``kind``, ``module`` (its name in the chain),
      ``size``, ``stride``, ``offset`` (receptive_field's numbers, in input pixels), ``grid``
      ``[rows, cols]``, ``tile`` (the side of a tile: the field's size), ``atlas`` (its file),
      ``mass`` (per unit, row by row: the share of the box clipped to the image that the
      fewest pixels holding 90 % of the gradient take; null where no gradient reaches the
      unit) and ``empty`` (how many units get no gradient);
    - ``fields-scene.png``, the scene;
    - ``fields-NAME.png`` for each layer, 8-bit grey: an atlas of ``rows x cols`` tiles of
      ``size x size``, tile ``(i, j)`` the map of unit ``(i, j)`` over its analytic box
      (its first pixel at ``offset + i * stride - (size - 1) / 2``), 0 where the box leaves
      the image, scaled to 255 at the unit's maximum;

    and ``fields-fallback.png``, three units' fields drawn with PIL, for a page that cannot
    decompress the script. About 0.9 MB for a 128 x 128 scene, in a few seconds on a CPU.
    """
    _check(net, image)
    if noise < 0:
        raise ValueError(f"noise must be a number of images >= 0, got {noise}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    leaves, offered = _layers(net)
    device = next(net.parameters()).device
    scene = image.float()[None] / 255  # (1, 3, H, W) in [0, 1], as the net takes images
    g = torch.Generator().manual_seed(seed)
    inputs = torch.cat([scene, torch.randn(noise, *image.shape, generator=g)]).to(device)
    layers, atlases = [], {}
    for name, rf, end in offered:
        entry, atlas = _layer_maps(leaves, net, inputs, name, rf, end)
        layers.append(entry)
        atlases[name] = atlas
    inputs_said = "the scene" + (f" and {noise} seeded Gaussian noise images" if noise else "")
    fields = {
        "format": FIELDS_FORMAT,
        "size": list(image.shape[1:]),
        "inputs": inputs_said,
        "mass": MASS,
        "scene": "fields-scene.png",
        "layers": layers,
    }
    files = {"fields.json": json.dumps(fields, separators=(",", ":")).encode()}
    files["fields-scene.png"] = _png(image.permute(1, 2, 0).contiguous())
    files |= {entry["atlas"]: _png(atlases[entry["name"]]) for entry in layers}
    names = [entry["name"] for entry in layers]
    picks = list(dict.fromkeys([*names[-4::2], names[-1]]))  # pool3, pool5, fc7 for a lab net
    figure = _fallback_figure(image, layers, atlases, picks)
    atomic_write(lambda f: figure.save(f, format="PNG"), folder / "fields-fallback.png")
    return write_files_script(folder / "fields.js", files)

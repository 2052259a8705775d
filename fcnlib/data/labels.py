"""Label maps: what a pixel's integer means, and how VOC stores and colours it.

A label map is an integer tensor (H, W): pixel value c is class c of the dataset's class list,
and :data:`IGNORE_INDEX` (255) is *void*, a pixel neither the loss nor the metrics count (VOC's
band along every object outline, padding added by a crop). :func:`voc_palette` is PASCAL VOC's
colour map, which every figure of the course uses, and :func:`save_label_png` writes a label map
as VOC writes its ``SegmentationClass`` files: a palette PNG whose pixel values are the ids.
:func:`check_ignore_index` is the one rule, shared by the loss, the metrics and
:class:`~fcnlib.recipes.TrainConfig`, for what may serve as the ignore label.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = ["IGNORE_INDEX", "VOID_COLOR", "check_ignore_index", "save_label_png", "voc_palette"]

IGNORE_INDEX = 255  # void: ignored by the loss and the metrics

VOID_COLOR = (224, 224, 192)  # what VOC's own PNGs show for label 255


def check_ignore_index(value: Any, *, none_ok: bool = False) -> int | None:
    """``value`` as a plain int if it can be the ignore label, else TypeError or ValueError.

    The ignore label is an integer that a label map holds: 0..255, the values of an 8-bit
    label map (fcnlib's void is 255), or any negative int (torch's own default is -100; class
    ids are never negative, so a negative label never hides a class). A float or a bool is
    refused: ``3.5`` equals no integer label and would ignore nothing, ``True`` would ignore
    class 1. ``none_ok``: None (count every pixel) is accepted too, as the metrics take it.

    >>> check_ignore_index(255), check_ignore_index(-100)
    (255, -100)
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        also = " or None (count every pixel)" if none_ok else ""
        hint = " (True would mean class 1)" if isinstance(value, bool) else ""
        raise TypeError(
            f"ignore_index must be an int, the label value of the pixels to skip{also}; got "
            f"{value!r} of type {type(value).__name__}{hint}. fcnlib's void label is 255."
        )
    if int(value) > 255:
        raise ValueError(
            f"ignore_index must be a label value 0..255 (what an 8-bit label map holds; "
            f"fcnlib's void is 255) or negative (torch's default is -100), got {int(value)}"
        )
    return int(value)


def voc_palette(n: int = 256) -> torch.Tensor:
    """The PASCAL VOC colour map as an (n, 3) uint8 tensor.

    Class c gets its colour by dealing the bits of c, lowest first, to R, G, B in turn, and
    placing each round of three from the most significant bit of the channel downwards. Class 0
    (background) is black, 1 is (128, 0, 0), and 255 (void) is (224, 224, 192), as in VOC's PNGs.

    >>> voc_palette()[[0, 1, 15, 255]].tolist()
    [[0, 0, 0], [128, 0, 0], [192, 128, 128], [224, 224, 192]]
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    c = torch.arange(n)
    rgb = torch.zeros(n, 3, dtype=torch.int64)
    for rnd in range(8):  # 8 rounds x 3 bits covers ids up to 2**24
        for ch in range(3):
            rgb[:, ch] |= ((c >> (3 * rnd + ch)) & 1) << (7 - rnd)
    return rgb.to(torch.uint8)


def save_label_png(label: torch.Tensor, path: str | Path | BinaryIO, *, atomic: bool = False):
    """Write a label map ``(H, W)`` as VOC writes its ``SegmentationClass`` PNGs.

    A palette PNG (PIL mode ``"P"``): each pixel stores its class id (255: void), and the VOC
    colour map (:func:`voc_palette`) makes it display in the usual colours; read
    the ids back with ``np.array(Image.open(path))``. Ids must be in [0, 255].
    ``atomic=True`` writes a temporary file beside ``path`` and renames it over ``path``, so a
    crash never leaves half a file (nor destroys the one there); the default writes in place,
    faster where many files are written at once (a dataset). ``path`` may also be a binary
    file object (``io.BytesIO()``), which gets the PNG's bytes. Returns ``path``.
    """
    import numpy as np
    from PIL import Image

    label = torch.as_tensor(label)
    if label.dim() != 2 or label.is_floating_point() or label.is_complex():
        raise ValueError(
            f"expected an integer label map (H, W), got dtype {label.dtype} and shape "
            f"{tuple(label.shape)}; for logits (N, C, H, W) pass logits.argmax(1)[i]"
        )
    if label.numel() and (int(label.min()) < 0 or int(label.max()) > 255):
        raise ValueError(
            f"a palette PNG holds class ids 0-255, got ids from {int(label.min())} to "
            f"{int(label.max())}; save labels of more classes with np.save or torch.save"
        )
    png = Image.fromarray(label.cpu().numpy().astype(np.uint8))  # mode "L": the ids
    png.putpalette(voc_palette().numpy().tobytes())  # "L" -> "P": the ids now index colours
    if hasattr(path, "write"):
        png.save(path, format="PNG")
        return path
    path = Path(path)
    if atomic:
        from fcnlib._io import atomic_write

        return atomic_write(lambda f: png.save(f, format="PNG"), path)
    png.save(path)
    return path

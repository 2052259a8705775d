"""Joint transforms: an image and its label map moved together, and fcnlib's item convention.

A random crop, flip, rescale or shift must do the same thing to the label as to the image, or
every pixel is taught the wrong class. torchvision's v2 transforms do that for an
``(tv_tensors.Image, tv_tensors.Mask)`` pair; :class:`PairTransform` wraps a v2 pipeline so
that it takes what the datasets read and returns fcnlib's convention, ``image`` float32
(C, H, W) in [0, 1] and ``label`` int64 (H, W) with 255 = void. :func:`train_transform` is the
paper's training augmentation (the random crop only, unless asked for more) and
:func:`eval_transform` the whole image at its own size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from fcnlib.data.labels import IGNORE_INDEX

__all__ = [
    "PairTransform",
    "RandomScale",
    "RandomShift",
    "as_tv_tensors",
    "eval_transform",
    "to_tensors",
    "train_transform",
]

Pair = tuple[Any, Any]


# --------------------------------------------------------------------------------------------
# Conversions between PIL / NumPy / tv_tensors and fcnlib's (float image, int64 label) pairs.
# --------------------------------------------------------------------------------------------


def as_tv_tensors(image: Any, label: Any) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Wrap a pair as ``(tv_tensors.Image, tv_tensors.Mask)`` so v2 transforms treat them right.

    ``image``: PIL image, (H, W, 3) array or (3, H, W) tensor (uint8 or float).
    ``label``: PIL image (palette or greyscale), (H, W) array or tensor; dtype is kept.
    """
    if isinstance(image, Image.Image):
        image = TF.pil_to_tensor(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if isinstance(label, Image.Image):
        label = np.array(label)  # a writable copy
    label = torch.as_tensor(label)
    if label.dim() == 3 and label.shape[0] == 1:
        label = label[0]
    if image.dim() != 3 or label.dim() != 2 or image.shape[-2:] != label.shape:
        raise ValueError(
            f"expected image (3, H, W) and label (H, W) of the same size, got "
            f"{tuple(image.shape)} and {tuple(label.shape)}"
        )
    return tv_tensors.Image(image), tv_tensors.Mask(label)


def to_tensors(image: Any, label: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair in fcnlib's convention: float32 (3, H, W) in [0, 1] and int64 (H, W)."""
    image, label = as_tv_tensors(image, label)
    image = TF.to_dtype(image, torch.float32, scale=True)
    return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor).long()


# --------------------------------------------------------------------------------------------
# Joint transforms.
# --------------------------------------------------------------------------------------------


class RandomScale:
    """Resize an (Image, Mask) pair by a factor drawn uniformly from ``scale``.

    The image is interpolated bilinearly (antialiased when shrinking), the mask with nearest
    neighbour so that it only ever holds values it held before (255 stays 255). The factor comes
    from torch's global generator, so ``torch.manual_seed`` makes it reproducible.
    """

    def __init__(self, scale: tuple[float, float] = (0.5, 2.0)) -> None:
        try:
            lo, hi = scale
            valid = 0 < lo <= hi
        except (TypeError, ValueError):  # not a pair of numbers, e.g. scale=0.5
            valid = False
        if not valid:
            raise ValueError(
                f"scale must be (low, high) with 0 < low <= high, such as (0.5, 2.0), got {scale!r}"
            )
        self.scale = (float(lo), float(hi))

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> Pair:
        lo, hi = self.scale
        factor = lo + (hi - lo) * float(torch.rand(()))
        h, w = image.shape[-2:]
        size = [max(1, round(h * factor)), max(1, round(w * factor))]
        if size == [h, w]:
            return image, mask
        image = TF.resize(image, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        mask = TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"


class RandomShift:
    """Translate an (Image, Mask) pair by up to ``max_shift`` pixels in each direction.

    The paper's "jittering" (section 4.3 tried shifts of up to 32 pixels, the coarsest output
    stride, and found no noticeable gain). The offsets ``dy, dx`` are drawn uniformly from
    ``-max_shift .. max_shift`` with torch's global generator; the pair keeps its size, and what
    moves in at the border is padding: 0 in the image, 255 (void) in the label, so the loss
    ignores it. ``image[:, y, x]`` lands at ``(y + dy, x + dx)``.
    """

    def __init__(self, max_shift: int = 32) -> None:
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"max_shift must be a whole number of pixels >= 0, got {max_shift!r}")
        self.max_shift = max_shift

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> Pair:
        s = self.max_shift
        dy, dx = (int(v) for v in torch.randint(-s, s + 1, (2,)))
        if dy == 0 and dx == 0:
            return image, mask
        h, w = image.shape[-2:]
        image = TF.pad(image, [s, s, s, s], fill=0)  # left, top, right, bottom
        mask = TF.pad(mask, [s, s, s, s], fill=IGNORE_INDEX)
        top, left = s - dy, s - dx
        return TF.crop(image, top, left, h, w), TF.crop(mask, top, left, h, w)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_shift={self.max_shift})"


class PairTransform:
    """Apply a v2 pipeline jointly to an ``(image, label)`` pair, return fcnlib's convention.

    Accepts what :func:`as_tv_tensors` accepts; returns ``(float32 image, int64 label)``, or
    with ``compact=True`` the pair as decoded (uint8 image 0-255, label in its decoded integer
    dtype, uint8 for VOC and SBD): a fifth of the bytes for DataLoader workers to hand over.
    :func:`fcnlib.train.fit` and :func:`fcnlib.train.evaluate` convert such batches on the
    device (:func:`fcnlib.train.batch_to`), bit for bit as the float pair would have been.
    """

    def __init__(self, steps: Sequence[Callable[..., Any]] = (), *, compact: bool = False) -> None:
        self.pipeline = v2.Compose(list(steps) or [v2.Identity()])
        self.compact = bool(compact)

    def __call__(self, image: Any, label: Any) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = as_tv_tensors(image, label)
        image, label = self.pipeline(image, label)
        if self.compact:
            return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor)
        return to_tensors(image, label)

    def __repr__(self) -> str:
        extra = ", compact=True" if self.compact else ""
        return f"{type(self).__name__}({self.pipeline}{extra})"


def train_transform(
    crop: int | tuple[int, int] | None = 500,
    scale: tuple[float, float] | None = (0.5, 2.0),
    *,
    mirror: bool = True,
    shift: int | None = None,
    compact: bool = False,
) -> PairTransform:
    """Training augmentation: random scale, random shift, random horizontal mirror, random crop.

    Args:
        crop: side (or (H, W)) of the random crop; images smaller than that are padded first,
            the image with 0 and the label with 255 (void, so the padding costs nothing).
            ``None``: no crop, sizes vary.
        scale: range of the random resize factor; ``None``: no rescaling.
        mirror: flip left-right with probability 1/2.
        shift: translate by up to this many pixels each way (:class:`RandomShift`, the paper's
            jittering); ``None``: no shift.
        compact: hand over uint8 images and labels as decoded (see :class:`PairTransform`).

    All randomness comes from torch's global generator (``torch.manual_seed``). The paper's
    final nets trained with none of it: :func:`paper_datasets` switches scale, shift and mirror
    off unless asked.
    """
    _check_crop(crop)
    steps: list[Callable[..., Any]] = []
    if scale is not None:
        steps.append(RandomScale(scale))
    if shift:
        steps.append(RandomShift(shift))
    if mirror:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if crop is not None:
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
        steps.append(v2.RandomCrop(crop, pad_if_needed=True, fill=fill))
    return PairTransform(steps, compact=compact)


def _check_crop(crop: Any) -> None:
    """ValueError unless ``crop`` is None, a side in pixels >= 1 or a pair (H, W) of them."""
    sides = crop if isinstance(crop, (tuple, list)) else (crop,)
    whole = all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sides)
    if crop is not None and not (whole and len(sides) in (1, 2)):
        raise ValueError(
            f"crop must be a side in pixels >= 1, a pair (H, W) of them or None (no crop), "
            f"got {crop!r}"
        )


def eval_transform(*, compact: bool = False) -> PairTransform:
    """No augmentation: the whole image at its own size, as the paper evaluates.
    ``compact``: as decoded, uint8 (see :class:`PairTransform`)."""
    return PairTransform(compact=compact)

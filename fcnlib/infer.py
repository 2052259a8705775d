"""Inference: labels for images of any size and mode, in batches.

An FCN takes any input size, so prediction needs no tiling: images are converted to RGB floats in
[0, 1], grouped by size into batches, and labelled in one pass each. Image files are read as
displayed (EXIF orientation applied); files that are damaged, not images, or larger than a pixel
limit that keeps the memory in bounds are refused with their name, before their pixels are
decoded where the header tells. Images with NaN pixels, and logits that are not finite, are
refused rather than turned into labels.

>>> from fcnlib.models import fcn8s
>>> net = fcn8s("tiny_vgg", n_classes=7)
>>> labels = predict(net, [torch.rand(3, 40, 60), torch.rand(1, 33, 33)])  # RGB and grey
>>> [tuple(lab.shape) for lab in labels]
[(40, 60), (33, 33)]
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcnlib.modes import eval_mode

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageFileError",
    "check_image",
    "load_image",
    "predict",
    "to_rgb",
]


def to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Any image tensor as float RGB ``(3, H, W)`` in [0, 1].

    Accepts ``(H, W)`` or ``(C, H, W)`` with C = 1 (grey, repeated), 3 (RGB) or 4 (RGBA: the
    alpha channel is dropped, with a warning); uint8 (0-255), uint16 (0-65535, as
    ``torchvision.io.decode_image`` reads 16-bit PNGs) or float (0-1).
    """
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"expected an image (H, W) or (C, H, W) with C in 1, 3, 4, got shape "
            f"{tuple(image.shape)}; for a batch call predict() with the whole batch"
        )
    if image.shape[0] == 4:
        warnings.warn("RGBA image: the alpha channel is dropped", stacklevel=2)
        image = image[:3]
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    if image.dtype == torch.uint8:
        return image.float() / 255
    if image.dtype == torch.uint16:
        return image.float() / 65535
    if not image.is_floating_point():
        raise TypeError(
            f"expected uint8, uint16 or float pixels (float: RGB in [0, 1]), got {image.dtype}; "
            "scale other integer images to floats in [0, 1] first"
        )
    return image.float()


# What predict costs per megapixel, measured as the peak resident memory of predict() on one
# float32 image (FCN-8s on the lab backbone tiny_vgg, 21 classes, CPU): 0.51 GiB at 2 MP, 1.89 GiB
# at 8 MP, so about 0.24 GiB per megapixel. 40 megapixels (~9.5 GiB) fit a 16 GiB machine and take
# the photos of most cameras (24 MP: 6000x4000); the 81-MP image that used to exhaust memory would
# need ~19 GiB.
DEFAULT_MAX_PIXELS = 40_000_000


class ImageFileError(ValueError):
    """An image file that cannot be labelled: not an image, damaged, too large, or of unknown
    range. The message names the file and says what to do."""


def check_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Refuse, from its header alone (nothing is decoded), a file :func:`load_image` would refuse.

    Catches missing files, folders, empty files, files that are not images, images of more than
    ``max_pixels`` pixels and images of unknown range (float TIFF), each with a message naming
    the file; a damaged pixel stream only shows when :func:`load_image` decodes it.
    """
    with _open_image(path, max_pixels=max_pixels):
        pass


def load_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read an image file (PNG, JPEG, ...) as float RGB ``(3, H, W)`` in [0, 1], as displayed.

    The EXIF orientation tag is applied, so a portrait photo a camera stored on its side comes
    out upright: ``(H, W)`` is the size viewers show. Grey and palette images are converted to
    RGB; an alpha channel is dropped with a warning. 16-bit grey images are scaled by 65535
    (16-bit RGB ones PIL reads as 8-bit, correctly scaled); 32-bit integer or float images
    (TIFF) are refused: their range is unknown.

    ``max_pixels`` (default 40 megapixels) caps ``H * W``, read from the header before anything
    is decoded: predict needs about 0.24 GiB per megapixel (FCN-8s on the lab backbone, float32,
    measured), so 40 megapixels take ~9.5 GiB. ``None`` or 0: no limit of ours; PIL's own
    decompression-bomb check (``PIL.Image.MAX_IMAGE_PIXELS``) then still refuses files over
    twice its value (~179 megapixels) and its warning below that is silenced.

    Raises:
        FileNotFoundError, IsADirectoryError: no file at ``path``.
        ImageFileError: (a ValueError) an empty, damaged or non-image file, one over
            ``max_pixels``, or one of unknown range; the message says what to do.
    """
    import numpy as np
    from PIL import ImageOps

    with _open_image(path, max_pixels=max_pixels) as im:
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            warnings.warn(f"{Path(path).name}: the alpha channel is dropped", stacklevel=2)
        try:
            ImageOps.exif_transpose(im, in_place=True)  # decodes the pixels
            if im.mode.startswith("I;16"):  # 16-bit grey: convert("RGB") would clip it at 255
                grey = torch.from_numpy(np.asarray(im).astype(np.float32)) / 65535  # (H, W)
                return grey.expand(3, -1, -1).contiguous()
            rgb = np.asarray(im.convert("RGB")).copy()  # (H, W, 3) uint8
        except (OSError, SyntaxError, EOFError) as e:  # PIL's words for a broken pixel stream
            raise ImageFileError(
                f"{path} could not be decoded ({e}): the file is damaged or incomplete (a copy "
                "or download that did not finish?); replace it or leave it out"
            ) from e
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


@contextlib.contextmanager
def _open_image(path: str | Path, *, max_pixels: int | None) -> Iterator[Any]:
    """The PIL image at ``path``, opened lazily (header only), with every header check done."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image; pass its image files")
    if not path.exists():
        raise FileNotFoundError(f"no image at {path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise ImageFileError(
            f"{path} is empty (0 bytes): a copy or download that did not finish?; replace it "
            "or leave it out"
        )
    try:
        with warnings.catch_warnings():  # our max_pixels, below, decides instead of PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ImageFileError(
            f"{path}: PIL refuses it as a possible decompression bomb ({e}); if you trust the "
            "file, raise PIL.Image.MAX_IMAGE_PIXELS, else leave it out"
        ) from e
    except UnidentifiedImageError as e:
        raise ImageFileError(
            f"{path} is not an image PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP, ...); "
            "replace it with one, or leave it out"
        ) from e
    except OSError as e:
        if e.errno is not None:  # the system's error (permission denied, ...): it names the file
            raise
        raise ImageFileError(f"{path} is damaged ({e}); replace it or leave it out") from e
    with im:
        _check_header(path, im, max_pixels=max_pixels)
        yield im


def _check_header(path: Path, im: Any, *, max_pixels: int | None) -> None:
    width, height = im.size
    if max_pixels and width * height > max_pixels:
        raise ImageFileError(
            f"{path} is {width}x{height} = {_megapixels(width * height)}, more than the limit of "
            f"{_megapixels(max_pixels)} (predict needs about 0.24 GiB per megapixel); downscale "
            "it, or raise the limit with max_pixels= (command line: --max-pixels, 0 for none) "
            "if this machine has the memory"
        )
    if im.mode in ("I", "F"):
        raise ImageFileError(
            f"{path}: a {'32-bit integer' if im.mode == 'I' else 'float'} image (PIL mode "
            f"{im.mode!r}), whose range is unknown; expected 8- or 16-bit pixels. Scale it "
            "to [0, 1] yourself and pass the tensor to predict()"
        )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels" if pixels >= 100_000 else f"{pixels} pixels"


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """Predicted labels for images of any size.

    Args:
        model: maps float ``(N, 3, H, W)`` to logits ``(N, n_classes, H, W)``.
        images: a float batch ``(N, 3, H, W)``, or a list of images in any form
            :func:`to_rgb` accepts (sizes may differ).
        batch_size: images per forward pass (images of equal size are batched together).
        device: where to run (default: the model's device).

    Returns:
        int64 labels on the CPU: ``(N, H, W)`` for a batch tensor, else a list of ``(H, W)``.

    Raises:
        ValueError: an image holds NaN or inf (one such pixel makes every logit non-finite);
            checked for all images before the model runs.
        RuntimeError: the model's logits are not finite (NaN weights, say): no labels are made
            up from them.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    with eval_mode(model):
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            _check_finite(images)
            return torch.cat([
                _labels(model, images[i : i + batch_size].to(device), range(i, len(images)))
                for i in range(0, len(images), batch_size)
            ])  # fmt: skip
        rgb = [to_rgb(im) for im in images]
        _check_finite(rgb)
        out: list[torch.Tensor | None] = [None] * len(rgb)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(rgb):
            by_size.setdefault(tuple(im.shape[-2:]), []).append(i)
        for idx in by_size.values():
            for s in range(0, len(idx), batch_size):
                chunk = idx[s : s + batch_size]
                labels = _labels(model, torch.stack([rgb[i] for i in chunk]).to(device), chunk)
                for i, lab in zip(chunk, labels, strict=True):
                    out[i] = lab
        return out


def _check_finite(images: torch.Tensor | Sequence[torch.Tensor]) -> None:
    """Refuse NaN or inf pixels, naming the images (by their index in ``images``)."""
    if isinstance(images, torch.Tensor) and torch.isfinite(images).all():
        return  # one pass over the batch; the per-image search below only when it fails
    bad = [i for i, im in enumerate(images) if not torch.isfinite(im).all()]
    if bad:
        n = int((~torch.isfinite(images[bad[0]])).sum())
        more = f", and {len(bad) - 1} more images have some" if len(bad) > 1 else ""
        raise ValueError(
            f"image {bad[0]} has {n} non-finite pixel values (NaN or inf){more}; one such pixel "
            "makes every logit non-finite. Replace them first, e.g. torch.nan_to_num(image, "
            "nan=0.0, posinf=1.0, neginf=0.0), or leave the image out"
        )


def _labels(model: nn.Module, batch: torch.Tensor, index: Sequence[int]) -> torch.Tensor:
    """argmax labels ``(n, H, W)`` on the CPU for ``batch`` ``(n, 3, H, W)``, whose images are
    ``index[:n]`` of the caller's; refused where the logits are not finite."""
    logits = model(batch)  # (n, n_classes, H, W)
    if not torch.isfinite(logits).all():
        bad = [index[j] for j in range(len(logits)) if not torch.isfinite(logits[j]).all()]
        raise RuntimeError(
            f"the model's logits of image{'s' * (len(bad) > 1)} {', '.join(map(str, bad))} are "
            "not finite (NaN or inf), though the images are; its weights are probably NaN or "
            "inf (a training run that diverged?): check all(p.isfinite().all() for p in "
            "model.parameters()) and load an earlier checkpoint"
        )
    return logits.argmax(1).cpu()

"""Inference: labels for images of any size and mode, in batches.

An FCN takes any input size, so prediction needs no tiling: images are converted to RGB floats in
[0, 1], grouped by size into batches, and labelled in one pass each.

>>> from fcnlib.models import fcn8s
>>> net = fcn8s("tiny_vgg", n_classes=7)
>>> labels = predict(net, [torch.rand(3, 40, 60), torch.rand(1, 33, 33)])  # RGB and grey
>>> [tuple(lab.shape) for lab in labels]
[(40, 60), (33, 33)]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from fcnlib.modes import eval_mode

__all__ = ["load_image", "predict", "to_rgb"]


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


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file (PNG, JPEG, ...) as float RGB ``(3, H, W)`` in [0, 1].

    Grey and palette images are converted to RGB; an alpha channel is dropped with a warning.
    16-bit grey images are scaled by 65535 (16-bit RGB ones PIL reads as 8-bit, correctly
    scaled); 32-bit integer or float images (TIFF) are refused: their range is unknown.
    """
    import numpy as np
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image at {path}")
    with Image.open(path) as im:
        if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            warnings.warn(f"{path.name}: the alpha channel is dropped", stacklevel=2)
        if im.mode.startswith("I;16"):  # 16-bit grey: convert("RGB") would clip it at 255
            grey = torch.from_numpy(np.asarray(im).astype(np.float32)) / 65535  # (H, W)
            return grey.expand(3, -1, -1).contiguous()
        if im.mode in ("I", "F"):
            raise ValueError(
                f"{path}: a {'32-bit integer' if im.mode == 'I' else 'float'} image (PIL mode "
                f"{im.mode!r}), whose range is unknown; expected 8- or 16-bit pixels. Scale it "
                "to [0, 1] yourself and pass the tensor to predict()"
            )
        rgb = np.asarray(im.convert("RGB")).copy()
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


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
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    with eval_mode(model):
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            return torch.cat([
                model(images[i : i + batch_size].to(device)).argmax(1).cpu()
                for i in range(0, len(images), batch_size)
            ])  # fmt: skip
        rgb = [to_rgb(im) for im in images]
        out: list[torch.Tensor | None] = [None] * len(rgb)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(rgb):
            by_size.setdefault(tuple(im.shape[-2:]), []).append(i)
        for idx in by_size.values():
            for s in range(0, len(idx), batch_size):
                chunk = idx[s : s + batch_size]
                labels = model(torch.stack([rgb[i] for i in chunk]).to(device)).argmax(1).cpu()
                for i, lab in zip(chunk, labels, strict=True):
                    out[i] = lab
        return out

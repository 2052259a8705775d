"""Patchwise segmentation: the pre-FCN baseline.

Before FCNs, a dense labelling was often made by classifying, for every pixel, a patch centred on
it and stitching the answers into a map. Each output pixel costs one full classifier evaluation,
and neighbouring patches, which overlap almost completely, share none of the work. Chapter 1
trains such a classifier; Chapter 2 shows that an FCN computes the same thing in one pass.

Convention: the patch of size ``P`` for pixel ``(y, x)`` covers rows ``y - P//2`` to
``y - P//2 + P - 1`` (columns likewise); for even ``P`` the centre pixel sits just below and
right of the middle.
Pixels beyond the image border read as zeros.

>>> images = torch.rand(2, 3, 20, 24)
>>> patch_windows(images, size=9).shape  # a view, no copy: (N, 3, H, W, P, P)
torch.Size([2, 3, 20, 24, 9, 9])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnlib.data.labels import check_ignore_index

__all__ = [
    "classify_pixels",
    "patch_windows",
    "predict_patchwise",
    "sample_patches",
    "sliding_window_scores",
]


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}; "
            "add a batch dimension with images.unsqueeze(0) for a single image"
        )


def patch_windows(images: torch.Tensor, *, size: int) -> torch.Tensor:
    """Every ``size x size`` patch of ``images``, one centred on each pixel, as a strided view.

    Args:
        images: float ``(N, 3, H, W)``.
        size: patch side ``P`` (>= 1).

    Returns:
        ``(N, 3, H, W, P, P)``; element ``[n, :, y, x]`` is the patch centred on pixel ``(y, x)``.
        It is a view of a zero-padded copy: indexing it copies only the patches you take.
    """
    _check_images(images)
    if size < 1:
        raise ValueError(f"patch size must be >= 1, got {size}")
    before, after = size // 2, size - size // 2 - 1
    padded = F.pad(images, (before, after, before, after))
    return padded.unfold(2, size, 1).unfold(3, size, 1)


def sample_patches(
    images: torch.Tensor,
    labels: torch.Tensor,
    n: int,
    *,
    size: int,
    object_weight: float = 1.0,
    ignore_index: int = 255,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` random training patches and the labels of their centre pixels.

    Args:
        images: float ``(N, 3, H, W)``; labels: int64 ``(N, H, W)``.
        n: number of patches.
        size: patch side.
        object_weight: how much more often a non-background pixel (label > 0) is drawn than a
            background one, to counter class imbalance as patchwise methods did.
        ignore_index: centre pixels with this label are never drawn.
        generator: for reproducible draws.

    Returns:
        ``(patches float (n, 3, P, P), targets int64 (n,))``.
    """
    if labels.shape != images.shape[:1] + images.shape[2:]:
        raise ValueError(
            f"labels {tuple(labels.shape)} do not match images {tuple(images.shape)}: "
            "expected (N, H, W) for images (N, 3, H, W)"
        )
    ignore_index = check_ignore_index(ignore_index)
    weights = torch.where(labels == 0, 1.0, float(object_weight))
    weights = weights.masked_fill(labels == ignore_index, 0.0)
    if weights.sum() <= 0:
        raise ValueError("no pixel can be sampled: every label is the ignore label")
    flat = torch.multinomial(weights.flatten(), n, replacement=True, generator=generator)
    h, w = labels.shape[-2:]
    b, y, x = flat // (h * w), (flat // w) % h, flat % w
    return patch_windows(images, size=size)[b, :, y, x], labels[b, y, x]


@torch.inference_mode()
def classify_pixels(
    classifier: nn.Module,
    images: torch.Tensor,
    index: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    size: int,
    chunk: int = 4096,
    progress: bool | str = False,
) -> torch.Tensor:
    """Classify the patches centred on chosen pixels: one classifier call per pixel.

    Args:
        classifier: maps ``(B, 3, P, P)`` patches to ``(B, n_classes)`` logits.
        images: float ``(N, 3, H, W)``.
        index: ``(n, y, x)`` int64 tensors of equal length naming the pixels.
        size: patch side ``P`` the classifier expects.
        chunk: patches per forward pass (memory: ``chunk * 3 * P * P`` floats).
        progress: True, or a label, for a bar that moves per chunk.

    Returns:
        int64 ``(len(n),)`` predicted classes, on ``images``' device.
    """
    from fcnlib.progress import progress_bar

    windows = patch_windows(images, size=size)
    b, y, x = index
    label = progress if isinstance(progress, str) else "patches"
    starts = progress_bar(range(0, len(b), chunk), desc=label, unit="chunk", disable=not progress)
    preds = [
        classifier(windows[b[i : i + chunk], :, y[i : i + chunk], x[i : i + chunk]]).argmax(1)
        for i in starts
    ]
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64, device=images.device)


def predict_patchwise(
    classifier: nn.Module, images: torch.Tensor, *, size: int, chunk: int = 4096
) -> torch.Tensor:
    """Dense labels by classifying the patch around every pixel and stitching the answers.

    Args:
        classifier: maps ``(B, 3, P, P)`` patches to ``(B, n_classes)`` logits.
        images: float ``(N, 3, H, W)``.
        size: patch side ``P``.
        chunk: patches per forward pass.

    Returns:
        int64 ``(N, H, W)`` label map: ``H * W`` classifier evaluations per image.
    """
    _check_images(images)
    n, _, h, w = images.shape
    grid = torch.meshgrid(
        torch.arange(n, device=images.device),
        torch.arange(h, device=images.device),
        torch.arange(w, device=images.device),
        indexing="ij",
    )
    index = tuple(g.reshape(-1) for g in grid)
    return classify_pixels(classifier, images, index, size=size, chunk=chunk).view(n, h, w)


@torch.inference_mode()
def sliding_window_scores(
    classifier: nn.Module, images: torch.Tensor, *, window: int, stride: int, chunk: int = 64
) -> torch.Tensor:
    """Run a classifier on every ``window x window`` crop at ``stride``: the sliding window.

    Args:
        classifier: maps ``(B, 3, window, window)`` to ``(B, n_classes)`` logits.
        images: float ``(N, 3, H, W)`` with ``H, W >= window``.
        window, stride: crop side and step in pixels (no padding: crops lie inside the image).
        chunk: crops per forward pass.

    Returns:
        ``(N, n_classes, h, w)`` scores with ``h = (H - window) // stride + 1`` (same for ``w``):
        the same grid as the convolutionalized classifier, computed one crop at a time.
    """
    _check_images(images)
    n, _, h, w = images.shape
    if h < window or w < window:
        raise ValueError(f"images of {h}x{w} are smaller than the {window}x{window} window")
    crops = images.unfold(2, window, stride).unfold(3, window, stride)  # (N, 3, h', w', P, P)
    gh, gw = crops.shape[2:4]
    flat = crops.permute(0, 2, 3, 1, 4, 5).reshape(n * gh * gw, 3, window, window)
    scores = torch.cat([classifier(flat[i : i + chunk]) for i in range(0, len(flat), chunk)])
    return scores.view(n, gh, gw, -1).permute(0, 3, 1, 2)

"""The loss: the paper's per-pixel multinomial logistic loss (softmax cross-entropy), void
skipped, with its options: the official "heavy" recipe's summed loss, loss sampling (section
4.3: whole final-layer cells dropped at random) and class weights (inverse frequency, which the
paper found unnecessary). :mod:`fcnlib.train` uses it and re-exports both functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fcnlib.data.labels import check_ignore_index

__all__ = ["balanced_class_weights", "segmentation_loss"]


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = 255,
    reduction: str = "mean",
    sample_fraction: float | None = None,
    sample_cell: int = 1,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-pixel softmax cross-entropy (the paper's multinomial logistic loss), void skipped.

    Args:
        logits: float ``(N, C, H, W)``, the model's full-resolution output.
        target: int64 ``(N, H, W)`` with class ids ``0..C-1`` or ``ignore_index``.
        ignore_index: the label of pixels that do not count (void): an int, 0..255 or
            negative (see :func:`fcnlib.data.labels.check_ignore_index`).
        reduction: ``"mean"`` over labelled pixels (weighted mean with class weights) or
            ``"sum"``, the official "heavy" recipe's unnormalised loss.
        sample_fraction: keep each sampling cell's loss with probability ``p`` (loss
            sampling); the dropped pixels count as void. ``None`` keeps all.
        sample_cell: side in pixels of the cells kept or dropped together. The paper (§4.3)
            drops whole *final-layer cells*: pass the net's output stride (32 for FCN-32s),
            cells aligned with the image's top-left corner. 1 samples single pixels.
        class_weights: one float per class, or None.
        generator: random source for the sampling (default: torch's global one).

    Returns a float32 scalar; 0 (not nan) when no pixel is labelled.

    >>> logits, target = torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 1], [2, 255]]])
    >>> round(segmentation_loss(logits, target).item(), 4)  # log(3) per labelled pixel
    1.0986
    """
    ignore_index = check_ignore_index(ignore_index)
    if logits.dim() != 4 or target.dim() != 3:
        raise ValueError(
            f"expected logits (N, C, H, W) and target (N, H, W), got logits "
            f"{tuple(logits.shape)} and target {tuple(target.shape)}"
        )
    n_classes = logits.shape[1]
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not match target {tuple(target.shape)}: need the "
            f"same N, H, W. Upsample the logits to the label size, e.g. F.interpolate(logits, "
            f"size=target.shape[-2:], mode='bilinear'); the models in fcnlib already output "
            f"full resolution."
        )
    if target.is_floating_point():
        raise TypeError(f"target must hold integer class ids, got dtype {target.dtype}")
    target = target.long()
    labelled = target != ignore_index
    bad = labelled & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        found = torch.unique(target[bad]).tolist()[:10]
        raise ValueError(
            f"target contains {found}, neither a class id in [0, {n_classes - 1}] (the logits "
            f"have {n_classes} channels) nor the ignore label {ignore_index}. Check the model's "
            f"n_classes, or map such labels to {ignore_index}."
        )
    if sample_fraction is not None:
        if not 0 < sample_fraction <= 1:
            raise ValueError(f"sample_fraction must be in (0, 1], got {sample_fraction}")
        if not isinstance(sample_cell, int) or isinstance(sample_cell, bool) or sample_cell < 1:
            raise ValueError(f"sample_cell must be an int >= 1 (pixels), got {sample_cell!r}")
        n, h, w = target.shape
        cells = (n, -(-h // sample_cell), -(-w // sample_cell))  # ceil: partial cells at the edge
        where = generator.device if generator is not None else target.device
        keep = torch.rand(cells, generator=generator, device=where) < sample_fraction
        keep = keep.repeat_interleave(sample_cell, 1).repeat_interleave(sample_cell, 2)
        labelled = labelled & keep[:, :h, :w].to(target.device)
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=torch.float32, device=logits.device)
        if weight.shape != (n_classes,):
            raise ValueError(f"need one class weight per class ({n_classes}), got {weight.shape}")
    # float32 sums: a 500x500 fp16 loss map overflows; masked pixels get loss 0 via ignore_index
    safe = target.masked_fill(~labelled, ignore_index)
    per_pixel = F.cross_entropy(
        logits.float(), safe, weight=weight, ignore_index=ignore_index, reduction="none"
    )
    total = per_pixel.sum()
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    count = weight[safe[labelled]].sum() if weight is not None else labelled.sum()
    return total / count.clamp_min(1e-12)


def balanced_class_weights(counts: torch.Tensor) -> torch.Tensor:
    """Inverse-frequency weights from a label histogram: every present class weighs the same.

    ``w_c = total / (n_present * count_c)``, 0 for absent classes, so the mean weight over the
    labelled pixels is 1. (The paper found balancing unnecessary: VOC is ~3/4 background.)

    >>> balanced_class_weights(torch.tensor([300, 100, 0]))
    tensor([0.6667, 2.0000, 0.0000])
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.float()

"""The paper's four segmentation metrics, all read off one confusion matrix.

Let ``n_ij`` be the number of pixels of ground-truth class ``i`` predicted as class ``j`` and
``t_i = sum_j n_ij`` the number of pixels of class ``i`` (FCN paper, section 5):

- pixel accuracy:          ``sum_i n_ii / sum_i t_i``
- mean accuracy:           ``(1/n_cl) sum_i n_ii / t_i``
- mean IU:                 ``(1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)``
- frequency weighted IU:   ``(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)``

A class whose ratio is 0/0 is skipped by the mean: mean accuracy skips classes absent from the
ground truth, mean IU skips classes absent from both ground truth and prediction (a class that is
predicted but never present scores IU 0 and does count). Pixels labelled ``ignore_index`` (255,
PASCAL VOC's "void" border) are not counted at all.

Other libraries differ exactly at those 0/0 classes. torchmetrics (checked from 1.0 to 1.9, with
``ignore_index=255``) gives the same matrix, pixel accuracy (``MulticlassAccuracy`` with
``average="micro"``), mean IU (``MulticlassJaccardIndex``, ``average="macro"``, which also leaves
out classes absent from both ground truth and prediction) and f.w. IU (``average="weighted"``).
Its mean accuracy (``MulticlassAccuracy``, ``average="macro"``) differs: it leaves out only the
classes absent from both, so a class that is predicted but absent from the ground truth enters
its mean with accuracy 0, where the paper's mean skips it; with ``k`` such classes out of ``n``
(and none absent from both), its value is this one times ``(n - k) / n``. Its per-class values
(``average="none"``) are 0 where these are nan. Before 1.0 (0.11), its macro mean IU also
counted classes absent from both as IU 0.

Accumulate the matrix over the whole evaluation set and compute once at the end: the mean of
per-image mean IUs is a different (and not the paper's) number.

The four metrics count every pixel alike, and the interiors of large regions dominate them.
:func:`boundary_band` selects the pixels near label boundaries (a "trimap" band), where coarse
predictions fail first: score those alone with
``target.masked_fill(~boundary_band(target, width), 255)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F

from fcnlib.data.labels import check_ignore_index

__all__ = [
    "ConfusionMatrix",
    "Scores",
    "boundary_band",
    "coarse_labels",
    "scores",
    "scores_table",
]


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}"  # x != x is True only for nan


@dataclass(frozen=True, eq=False)
class Scores:
    """Metrics of one confusion matrix; floats in [0, 1], nan when undefined (see module doc).

    ``iu`` and ``acc`` are per-class float64 CPU tensors of length ``n_classes``; ``confusion`` is
    the int64 CPU matrix with rows = ground truth, columns = prediction.
    """

    pixel_acc: float
    mean_acc: float
    mean_iu: float
    fw_iu: float
    iu: torch.Tensor = field(repr=False)
    acc: torch.Tensor = field(repr=False)
    confusion: torch.Tensor = field(repr=False)

    def as_dict(self) -> dict[str, float]:
        """The four summary metrics, e.g. for logging."""
        return {
            "pixel_acc": self.pixel_acc,
            "mean_acc": self.mean_acc,
            "mean_iu": self.mean_iu,
            "fw_iu": self.fw_iu,
        }

    def __str__(self) -> str:
        return (
            f"pixel acc {_pct(self.pixel_acc)} | mean acc {_pct(self.mean_acc)} | "
            f"mean IU {_pct(self.mean_iu)} | f.w. IU {_pct(self.fw_iu)}"
        )

    def to_table(self, class_names: list[str] | None = None) -> str:
        """Plain-text table of per-class IU and accuracy in percent ("-" where undefined)."""
        n = len(self.iu)
        names = [str(c) for c in range(n)] if class_names is None else list(class_names)
        if len(names) != n:
            raise ValueError(f"got {len(names)} class names for {n} classes; pass one per class")
        width = max(len("class"), *(len(s) for s in names))
        rows = [f"{'class':<{width}}  {'IU':>6}  {'acc':>6}"]
        for name, iu, acc in zip(names, self.iu.tolist(), self.acc.tolist(), strict=True):
            rows.append(f"{name:<{width}}  {_pct(iu):>6}  {_pct(acc):>6}")
        rows.append(f"{'mean':<{width}}  {_pct(self.mean_iu):>6}  {_pct(self.mean_acc):>6}")
        return "\n".join(rows)


class ConfusionMatrix:
    """Accumulates ``n_ij`` (rows: ground truth i, columns: prediction j) over many batches.

    Args:
        n_classes: number of classes, labels are ``0 .. n_classes - 1``.
        ignore_index: target label whose pixels are not counted (VOC's void, 255); None counts all.
            An int 0..255 or negative (:func:`fcnlib.data.labels.check_ignore_index`).

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> target = torch.tensor([[0, 0, 1, 255]])
        >>> cm.update(torch.tensor([[0, 1, 1, 2]]), target).compute().pixel_acc
        0.6666666666666666
    """

    def __init__(self, n_classes: int, *, ignore_index: int | None = 255) -> None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, int):
            raise TypeError(f"n_classes must be an int, got {type(n_classes).__name__}")
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}; count the background too")
        self.n_classes = n_classes
        self.ignore_index = check_ignore_index(ignore_index, none_ok=True)
        self.matrix = torch.zeros(n_classes, n_classes, dtype=torch.int64)

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(n_classes={self.n_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self.matrix.sum())}, device={self.matrix.device})"
        )

    def _check_values(self, name: str, values: torch.Tensor) -> None:
        bad = (values < 0) | (values >= self.n_classes)
        if not bool(bad.any()):
            return
        found = torch.unique(values[bad]).tolist()
        listed = ", ".join(map(str, found[:10])) + (", ..." if len(found) > 10 else "")
        if self.ignore_index is None:
            ignore = "ignore_index is None, so no label is ignored"
        else:
            ignore = f"pixels labelled {self.ignore_index} (ignore_index) are skipped"
        raise ValueError(
            f"{name} contains class ids [{listed}] outside the valid range "
            f"[0, {self.n_classes - 1}] for n_classes={self.n_classes} ({ignore}). "
            f"Check n_classes, or map such labels to the ignore label before scoring."
        )

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> ConfusionMatrix:
        """Count one batch. Returns self, so calls can be chained.

        Args:
            pred: integer class ids, any shape, e.g. (N, H, W) -- ``logits.argmax(1)``.
            target: integer ground truth of the same shape and device; ``ignore_index`` skipped.
        """
        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        for name, t in (("pred", pred), ("target", target)):
            if t.is_floating_point() or t.is_complex():
                raise TypeError(
                    f"{name} must hold integer class ids, got dtype {t.dtype}. For network "
                    f"outputs pass `logits.argmax(1)` (argmax over the class dimension)."
                )
        if pred.shape != target.shape:
            resize = pred.shape[-2:] != target.shape[-2:]
            hint = "give one prediction per labelled pixel"
            if pred.dim() == target.dim() + 1:
                hint = "take argmax over the class dimension: `logits.argmax(1)`"
                if resize:
                    hint = "upsample the logits to the label size, then " + hint
            elif resize:
                hint = "upsample the logits to the label size before taking the argmax"
            raise ValueError(
                f"pred and target must have the same shape, got pred {tuple(pred.shape)} and "
                f"target {tuple(target.shape)}; {hint}."
            )
        if pred.device != target.device:
            raise ValueError(
                f"pred is on {pred.device} but target on {target.device}; move both to one device"
            )
        # int64 before any arithmetic: uint8 labels (as read from PNGs) would overflow n * t + p
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        self._check_values("target", target)
        self._check_values("pred", pred)
        n = self.n_classes
        counts = torch.bincount(n * target + pred, minlength=n * n).reshape(n, n)
        if self.matrix.device != counts.device:
            self.matrix = self.matrix.to(counts.device)  # follow the data, e.g. onto the GPU
        self.matrix += counts
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (same n_classes), e.g. per-worker results. Returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.n_classes != self.n_classes:
            raise ValueError(
                f"cannot merge a {other.n_classes}-class matrix into a {self.n_classes}-class one"
            )
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def all_reduce_(self) -> ConfusionMatrix:
        """Sum the matrix over all processes if torch.distributed is initialised, else no-op.

        With the NCCL backend the matrix must be on the GPU (it is, after a GPU update).
        """
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)
        return self

    def reset(self) -> ConfusionMatrix:
        """Zero the counts (the matrix stays on its device). Returns self."""
        self.matrix = torch.zeros_like(self.matrix)
        return self

    def compute(self) -> Scores:
        """The paper's metrics from the counts so far; see :class:`Scores`."""
        confusion = self.matrix.detach().cpu()
        n = confusion.double()
        hits, gt, predicted = n.diag(), n.sum(1), n.sum(0)
        total = gt.sum()
        # float division gives nan for 0/0, which is exactly "class undefined, skip in the mean"
        acc = hits / gt
        iu = hits / (gt + predicted - hits)
        present = gt > 0
        return Scores(
            pixel_acc=(hits.sum() / total).item(),
            mean_acc=torch.nanmean(acc).item(),
            mean_iu=torch.nanmean(iu).item(),
            fw_iu=((gt[present] * iu[present]).sum() / total).item(),
            iu=iu,
            acc=acc,
            confusion=confusion.clone(),
        )


def scores(
    pred: torch.Tensor, target: torch.Tensor, n_classes: int, *, ignore_index: int | None = 255
) -> Scores:
    """One-shot metrics for a single batch of integer predictions and labels.

    Example:
        >>> s = scores(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), n_classes=2)
        >>> round(s.mean_iu, 4)
        0.5
    """
    return ConfusionMatrix(n_classes, ignore_index=ignore_index).update(pred, target).compute()


def scores_table(
    rows: Mapping[str, Scores], columns: Mapping[str, Mapping[str, object]] | None = None
) -> str:
    """Plain-text table of the four metrics in percent: one row per run, narrow enough for a
    book's column (about 45 characters plus the names and any extra columns).

    ``columns`` adds columns after the four metrics: header -> {run name: value}; a value is
    printed as given (format numbers first), a run missing from a column shows "-".

    Example:
        >>> s = scores(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), n_classes=2)
        >>> print(scores_table({"net": s}, columns={"s/image": {"net": "0.01"}}))
        run | pixel acc | mean acc | mean IU | f.w. IU | s/image
        net |      66.7 |     75.0 |    50.0 |    50.0 |    0.01
    """
    if not rows:
        raise ValueError("scores_table needs at least one row: pass {name: Scores}")
    extra = dict(columns or {})
    for header, values in extra.items():
        unknown = set(values) - set(rows)
        if unknown:
            raise ValueError(
                f"column {header!r} has values for {sorted(unknown)}, which are not rows "
                f"({sorted(rows)}); key each column by the rows' names"
            )
    headers = ["pixel acc", "mean acc", "mean IU", "f.w. IU", *extra]
    body = []
    for name, s in rows.items():
        if not isinstance(s, Scores):
            raise TypeError(f"row {name!r} is a {type(s).__name__}; pass a Scores")
        cells = [_pct(s.pixel_acc), _pct(s.mean_acc), _pct(s.mean_iu), _pct(s.fw_iu)]
        cells += [str(values.get(name, "-")) for values in extra.values()]
        body.append((str(name), cells))
    name_width = max(len("run"), *(len(name) for name, _ in body))
    widths = [max(len(h), *(len(c[k]) for _, c in body)) for k, h in enumerate(headers)]

    def line(name: str, cells: list[str]) -> str:
        return " | ".join(
            [f"{name:>{name_width}}"] + [f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)]
        )

    return "\n".join([line("run", headers)] + [line(name, cells) for name, cells in body])


def _check_label_map(target: torch.Tensor) -> None:
    if target.dim() not in (2, 3) or target.is_floating_point():
        raise ValueError(
            f"target must be integer labels (H, W) or (N, H, W), got {target.dtype} "
            f"{tuple(target.shape)}"
        )


def boundary_band(target: torch.Tensor, width: int) -> torch.Tensor:
    """Bool mask of the pixels within ``width`` pixels of a label boundary (a trimap band).

    A pixel is in the band if its ``(2 width + 1)``-square window holds more than one label value
    (void counts as a value, so a void outline marks a boundary too). The image border is not a
    boundary: windows are clipped to the image.

    Args:
        target: integer labels ``(H, W)`` or ``(N, H, W)``.
        width: half-width of the band in pixels, >= 1.

    >>> t = torch.zeros(1, 6, 6, dtype=torch.long)
    >>> t[:, :, 3:] = 1  # a vertical boundary between columns 2 and 3
    >>> boundary_band(t, 1)[0, 0].int().tolist()
    [0, 0, 1, 1, 0, 0]
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1 (pixels), got {width!r}")
    _check_label_map(target)
    t = target.reshape(-1, 1, *target.shape[-2:]).double()  # float64 holds any label exactly
    k = 2 * width + 1
    padded = F.pad(t, (width,) * 4, mode="replicate")  # the border repeats: no boundary there
    high = F.max_pool2d(padded, k, stride=1)
    low = -F.max_pool2d(-padded, k, stride=1)
    return (high != low).reshape(target.shape)


def coarse_labels(
    target: torch.Tensor, factor: int, *, n_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """The best labelling a stride-``factor`` output can draw (the paper's Appendix A).

    Each ``factor x factor`` block of ``target`` gets its most frequent labelled class (void
    pixels do not vote; ties go to the lower class id), and the block label is copied back to
    every pixel of the block (nearest-neighbour upsampling). Per block, the majority is the
    prediction with the most correct pixels, so its scores bound what any prediction made at
    that resolution and upsampled by blocks can reach (exactly for pixel accuracy; the IU
    metrics are not maximised block by block, so for them it is a close estimate). Blocks of
    void alone stay void. Partial blocks at the right and bottom edges count as blocks.

    Args:
        target: integer labels ``(N, H, W)`` or ``(H, W)``, classes ``0..n_classes-1``, void.
        factor: block side (output stride), >= 1; 1 returns ``target`` unchanged.
        ignore_index: the void label (an int 0..255 or negative), as for the loss.

    Returns:
        int64 labels of the same shape.

    >>> t = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    >>> coarse_labels(t, 2, n_classes=2).tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1]]
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an int >= 1 (the output stride), got {factor!r}")
    ignore_index = check_ignore_index(ignore_index)
    _check_label_map(target)
    labelled = target != ignore_index
    bad = labelled & ((target < 0) | (target >= n_classes))
    if bad.any():
        raise ValueError(
            f"target holds values outside 0..{n_classes - 1} that are not void "
            f"({ignore_index}), e.g. {int(target[bad][0])}: check n_classes"
        )
    t = target.reshape(-1, *target.shape[-2:]).long()
    h, w = t.shape[-2:]
    onehot = F.one_hot(t.where(labelled.reshape(t.shape), 0), n_classes)  # (N, H, W, K)
    onehot = (onehot * labelled.reshape(*t.shape, 1)).permute(0, 3, 1, 2).float()
    # votes per block: average pooling of the one-hot maps (partial blocks at the edges too)
    votes = F.avg_pool2d(onehot, factor, stride=factor, ceil_mode=True)  # (N, K, h/f, w/f)
    block = votes.argmax(1)
    block[votes.sum(1) == 0] = ignore_index  # nothing labelled in the block
    up = block.repeat_interleave(factor, -2).repeat_interleave(factor, -1)[..., :h, :w]
    return up.reshape(target.shape)

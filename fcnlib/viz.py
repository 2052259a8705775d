"""Palettes, overlays and figure helpers, so that the notebooks stay short.

Label maps are integer tensors (H, W) or (N, H, W); images are float (3, H, W) in [0, 1] (uint8
also accepted). Figures come from pyplot, so in Jupyter end the line with ``;`` (or assign the
result) to avoid seeing a figure twice. pyplot is imported inside the functions, so importing this
module never picks a display backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.patches import Patch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "colorize",
    "legend_handles",
    "overlay",
    "plot_curves",
    "show_images",
    "show_segmentation",
    "voc_palette",
]

VOID_COLOR = (224, 224, 192)  # what VOC's own PNGs show for label 255


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


def _int_labels(label: torch.Tensor) -> torch.Tensor:
    label = torch.as_tensor(label)
    if label.is_floating_point() or label.is_complex():
        raise TypeError(
            f"label maps must hold integer class ids, got dtype {label.dtype}; "
            f"for network outputs pass `logits.argmax(1)`"
        )
    return label.long()


def colorize(
    label: torch.Tensor, *, palette: torch.Tensor | None = None, ignore_index: int | None = 255
) -> torch.Tensor:
    """Integer label map (H, W) or (N, H, W) -> uint8 RGB (3, H, W) or (N, 3, H, W).

    Pixels equal to ``ignore_index`` get the void colour whatever the palette.
    """
    label = _int_labels(label)
    if label.dim() not in (2, 3):
        raise ValueError(f"label must be (H, W) or (N, H, W), got shape {tuple(label.shape)}")
    pal = voc_palette() if palette is None else torch.as_tensor(palette, dtype=torch.uint8)
    pal = pal.reshape(-1, 3)
    n = len(pal)
    void = torch.zeros_like(label, dtype=torch.bool)
    if ignore_index is not None:
        void = label == ignore_index
    valid = label[~void]
    if bool((valid < 0).any()):
        raise ValueError(
            f"label has negative values {torch.unique(valid[valid < 0]).tolist()}; if one marks "
            f"unlabelled pixels, pass it as ignore_index"
        )
    if bool((valid >= n).any()):
        raise ValueError(
            f"label has ids up to {int(valid.max())} but the palette only {n} colours; "
            f"pass a longer palette"
        )
    # one extra palette row for void, so it works for any ignore_index and any palette
    pal = torch.cat([pal, torch.tensor([VOID_COLOR], dtype=torch.uint8)])
    label = torch.where(void, n, label)
    return pal.to(label.device)[label].movedim(-1, -3).contiguous()


def _float_image(image: torch.Tensor) -> torch.Tensor:
    image = torch.as_tensor(image)
    if not image.is_floating_point():
        return image.float() / 255
    return image.float().clamp(0, 1)  # clamp: normalisation leftovers make imshow warn


def overlay(
    image: torch.Tensor, label: torch.Tensor, *, alpha: float = 0.5, ignore_index: int | None = 255
) -> torch.Tensor:
    """Tint the object pixels of ``image`` (3, H, W) with the colours of ``label`` (H, W).

    Background (class 0) and void pixels keep the image colour. Returns float (3, H, W) in [0, 1].
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = _float_image(image)
    label = _int_labels(label).to(image.device)
    if image.dim() < 3 or image.shape[-3] != 3 or image.shape[-2:] != label.shape[-2:]:
        raise ValueError(
            f"need image (3, H, W) and label (H, W) of one size, got {tuple(image.shape)} "
            f"and {tuple(label.shape)}"
        )
    colour = colorize(label, ignore_index=ignore_index).to(image.device).float() / 255
    obj = label != 0
    if ignore_index is not None:
        obj &= label != ignore_index
    blended = (1 - alpha) * image + alpha * colour
    return torch.where(obj.unsqueeze(-3), blended, image)


def _hwc(image: torch.Tensor) -> Any:
    """(3, H, W) tensor -> (H, W, 3) numpy array for imshow."""
    return image.detach().cpu().permute(1, 2, 0).numpy()


def _clean(ax: Axes) -> None:
    # no ticks or frame, but unlike axis("off") this keeps the y label visible
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def legend_handles(class_names: Sequence[str], *, palette: torch.Tensor | None = None) -> list:
    """One coloured matplotlib patch per class, for ``ax.legend(handles=...)``."""
    pal = voc_palette(max(len(class_names), 1)) if palette is None else torch.as_tensor(palette)
    return [
        Patch(facecolor=(pal[i].float() / 255).tolist(), edgecolor="0.4", label=name)
        for i, name in enumerate(class_names)
    ]


def show_segmentation(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    preds: torch.Tensor | Mapping[str, torch.Tensor] | Sequence[torch.Tensor] | None = None,
    *,
    class_names: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
    max_items: int = 8,
    figsize: tuple[float, float] | None = None,
    ignore_index: int | None = 255,
) -> Figure:
    """Grid with one row per sample: image | ground truth | prediction(s).

    Args:
        images: (N, 3, H, W) float in [0, 1] (or one (3, H, W) image).
        labels: (N, H, W) integer ground truth, or None.
        preds: (N, H, W) integer predictions, several as ``{"FCN-32s": p32, "FCN-8s": p8}``
            (a list gets numbered names), or None.
        class_names: if given, a colour legend is drawn under the grid.
        titles: one row label per sample.
    """
    import matplotlib.pyplot as plt

    images = _float_image(images)
    if images.dim() == 3:
        images = images.unsqueeze(0)
    columns: list[tuple[str, torch.Tensor]] = [("image", images)]
    if labels is not None:
        columns.append(("ground truth", colorize(labels, ignore_index=ignore_index)))
    if isinstance(preds, Mapping):
        named = list(preds.items())
    elif isinstance(preds, list | tuple):
        named = [(f"prediction {k + 1}", p) for k, p in enumerate(preds)]
    else:
        named = [] if preds is None else [("prediction", preds)]
    columns += [(name, colorize(p, ignore_index=ignore_index)) for name, p in named]
    columns = [(name, t.unsqueeze(0) if t.dim() == 3 else t) for name, t in columns]

    rows = min(len(images), max_items)
    if figsize is None:
        figsize = (2.4 * len(columns), 2.4 * rows + (0.6 if class_names else 0))
    fig, axes = plt.subplots(
        rows, len(columns), figsize=figsize, squeeze=False, layout="constrained"
    )
    for r in range(rows):
        for c, (name, batch) in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(_hwc(batch[r]), interpolation="nearest")
            _clean(ax)
            if r == 0:
                ax.set_title(name)
        if titles is not None:
            axes[r, 0].set_ylabel(titles[r])
    if class_names:
        ncol = min(len(class_names), max(len(columns) * 2, 4))
        fig.legend(handles=legend_handles(class_names), loc="outside lower center", ncol=ncol)
    return fig


def show_images(
    images: torch.Tensor | Sequence[torch.Tensor],
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Images (N, 3, H, W) or (N, H, W) (grey) in a grid of at most ``ncols`` columns."""
    import matplotlib.pyplot as plt

    images = list(images)
    n = len(images)
    if n == 0:
        raise ValueError("no images to show")
    cols = min(n, ncols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=figsize or (2 * cols, 2 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            fig.delaxes(ax)  # so len(fig.axes) == number of images
            continue
        img = _float_image(images[k])
        if img.dim() == 3 and img.shape[0] == 3:
            ax.imshow(_hwc(img))
        else:
            ax.imshow(img.squeeze().detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        _clean(ax)
        if titles is not None:
            ax.set_title(titles[k])
    fig.tight_layout()
    return fig


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)  # float() also unwraps 0-d tensors


def _as_columns(history: Mapping | Sequence[Mapping]) -> dict[str, list[float]]:
    """A dict of lists, or a list of per-step dicts (missing entries -> nan), as a dict of lists."""
    if isinstance(history, Mapping):
        return {k: [_num(v) for v in vs] for k, vs in history.items()}
    keys = list(dict.fromkeys(k for rec in history for k in rec))
    return {k: [_num(rec.get(k)) for rec in history] for k in keys}


def _is_runs(history: Any) -> bool:
    """True for {run name: history}; a single history maps keys to lists of numbers."""
    if not isinstance(history, Mapping) or not history:
        return False
    return all(
        isinstance(v, Mapping) or (isinstance(v, Sequence) and v and isinstance(v[0], Mapping))
        for v in history.values()
    )


def plot_curves(
    history: Mapping | Sequence[Mapping],
    *,
    keys: Sequence[str] | None = None,
    x: str = "step",
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure | Axes:
    """One line per metric against ``x``; nan points are skipped, so sparse metrics join up.

    ``history`` is ``{"step": [...], "loss": [...], "mean_iu": [...]}``, a list of per-step dicts,
    or ``{run name: history}`` to compare runs on one axes. Returns the new Figure, or ``ax`` if
    one was given.
    """
    import matplotlib.pyplot as plt

    named = history if _is_runs(history) else {"": history}
    runs = {name: _as_columns(h) for name, h in named.items()}
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    styles = ["-", "--", ":", "-."]
    for r, (run, cols) in enumerate(runs.items()):
        names = [k for k in cols if k != x] if keys is None else list(keys)
        for k, key in enumerate(names):
            if key not in cols:
                raise KeyError(f"no {key!r} in history{f' {run!r}' if run else ''}: {list(cols)}")
            ys = cols[key]
            xs = cols.get(x, list(range(len(ys))))
            if len(xs) != len(ys):
                raise ValueError(
                    f"{key!r} has {len(ys)} values but {x!r} has {len(xs)}; log them together "
                    f"or pass a list of per-step dicts"
                )
            pts = [(a, b) for a, b in zip(xs, ys, strict=True) if not math.isnan(b)]
            label = " / ".join(s for s in (run, key) if s) if len(names) > 1 or not run else run
            # one colour per run (or per key when there is one run), one line style per key
            colour = f"C{r}" if len(runs) > 1 else f"C{k}"
            style = styles[k % len(styles)] if len(runs) > 1 else "-"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colour, label=label)
    ax.set_xlabel(x if any(x in cols for cols in runs.values()) else "index")
    if title:
        ax.set_title(title)
    ax.legend()
    return ax if fig is None else fig

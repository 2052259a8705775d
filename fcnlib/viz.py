"""Palettes, overlays and figure helpers, so that the notebooks stay short.

Architecture figures are drawn from the nets themselves, so they stay true to them: the map
sizes in :func:`draw_pipeline`, :func:`draw_fc_to_conv` and :func:`draw_fusion_graph` are the
shapes of tensors measured in a forward pass on a zero image, and the numbers in
:func:`draw_transposed_conv` and :func:`draw_shift_and_stitch` are computed, not typed in.

Label maps are integer tensors (H, W) or (N, H, W); images are float (3, H, W) in [0, 1] (uint8
also accepted). Figures come from pyplot, so in Jupyter end the line with ``;`` (or assign the
result) to avoid seeing a figure twice. pyplot is imported inside the functions, so importing this
module never picks a display backend.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from fcnlib.data.labels import (  # voc_palette: also part of this API
    VOID_COLOR,
    check_ignore_index,
    voc_palette,
)
from fcnlib.modes import eval_mode

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch import nn

    from fcnlib.models import FCN

__all__ = [
    "colorize",
    "draw_crop_geometry",
    "draw_fc_to_conv",
    "draw_fusion_graph",
    "draw_pipeline",
    "draw_shift_and_stitch",
    "draw_transposed_conv",
    "legend_handles",
    "overlay",
    "plot_confusion",
    "plot_curves",
    "plot_score_bars",
    "show_images",
    "show_segmentation",
    "voc_palette",
]


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
    ignore_index = check_ignore_index(ignore_index, none_ok=True)
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
    ignore_index = check_ignore_index(ignore_index, none_ok=True)
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
    from matplotlib.patches import Patch

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


_METRIC_NAMES = {
    "pixel_acc": "pixel acc",
    "mean_acc": "mean acc",
    "mean_iu": "mean IU",
    "fw_iu": "f.w. IU",
}


def plot_score_bars(
    results: Mapping[str, Any],
    *,
    metrics: Sequence[str] = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"),
    percent: bool = True,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure | Axes:
    """Grouped bar chart: one group per metric, one bar per run, each bar labelled with its value.

    ``results`` maps a run's name to its scores, a :class:`~fcnlib.metrics.Scores` or any
    mapping ``{metric: value}`` (so measures of your own, e.g. accuracy on some pixels, can sit
    beside the paper's four). Values are fractions, drawn as percentages with ``percent``; a
    nan value leaves its bar out. Returns the new Figure, or ``ax`` if one was given.

    >>> fig = plot_score_bars({"FCN-32s": {"mean_iu": 0.5}, "FCN-8s": {"mean_iu": 0.6}},
    ...                       metrics=["mean_iu"])
    """
    import textwrap

    import matplotlib.pyplot as plt

    def value(scores: Any, metric: str) -> float:
        got = scores.get(metric) if isinstance(scores, Mapping) else getattr(scores, metric, None)
        if got is None:
            raise KeyError(f"no {metric!r} in the scores {scores!r}; metrics asked: {metrics}")
        return _num(got) * (100 if percent else 1)

    fig = None
    if ax is None:
        width = max(4.0, 1.1 * len(metrics) * max(len(results), 1) ** 0.5 + 1.5)
        fig, ax = plt.subplots(figsize=(width, 3.2), layout="constrained")
    n = max(len(results), 1)
    bar = 0.8 / n
    top = 0.0
    for r, (run, scores) in enumerate(results.items()):
        xs = [m - 0.4 + bar * (r + 0.5) for m in range(len(metrics))]
        heights = [value(scores, metric) for metric in metrics]
        kept = [(x, h) for x, h in zip(xs, heights, strict=True) if not math.isnan(h)]
        bars = ax.bar([x for x, _ in kept], [h for _, h in kept], bar, label=run, color=f"C{r}")
        upright = n >= 4  # narrow bars: labels turned upright, so that neighbours do not overlap
        ax.bar_label(
            bars,
            fmt="%.1f" if percent else "%.3g",
            fontsize=7 if upright else 8,
            padding=2,
            rotation=90 if upright else 0,
        )
        top = max([top, *(h for _, h in kept)])
    names = [textwrap.fill(_METRIC_NAMES.get(m, m), 14) for m in metrics]  # long names: 2 lines
    ax.set_xticks(range(len(metrics)), names)
    ax.set_ylabel("%" if percent else "value")
    ax.set_ylim(0, top * (1.3 if n >= 4 else 1.15) if top > 0 else 1)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside, not on, the bars
    if title:
        ax.set_title(title)
    return ax if fig is None else fig


# ----------------------------------------------------------------------------------------------
# Architecture figures, drawn from the nets themselves
# ----------------------------------------------------------------------------------------------
#
# Every size printed in these figures is measured by running the net on a zero image of the
# given size, so the pictures stay true when a backbone, an input size or an alignment changes.

_BACKBONE_BLUES = ("#eff3ff", "#dbe7f6", "#c6dbef", "#9ecae1", "#7fb7da", "#6baed6", "#4f9bcb")
_SCORE = "#fdd0a2"  # class-score layers
_FUSE = "#fff2ae"  # sums
_OUTPUT = "#c7e9c0"  # per-pixel predictions
_EDGE = "0.35"


def plot_confusion(
    confusion: torch.Tensor,
    class_names: Sequence[str],
    *,
    normalize: bool = True,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Heatmap of a confusion matrix: rows are the true classes, columns the predictions.

    Args:
        confusion: ``(C, C)`` counts, ``confusion[i, j]`` = pixels of class i predicted j (as
            :class:`fcnlib.metrics.ConfusionMatrix` holds them).
        class_names: C names.
        normalize: divide each row by its total, so a row reads "where the pixels of this
            class went" and the diagonal is the class's accuracy; rare classes stay visible.
        ax: axes to draw on (a new figure otherwise).

    >>> fig = plot_confusion(torch.tensor([[8, 2], [1, 9]]), ["bg", "obj"])
    >>> fig.axes[0].images[0].get_array()[0, 1]  # row-normalised: 2 of background's 10
    np.float64(0.2)
    """
    confusion = torch.as_tensor(confusion).double().cpu()
    if confusion.dim() != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"expected a square (C, C) matrix, got shape {tuple(confusion.shape)}")
    if len(class_names) != confusion.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {confusion.shape[0]}-class matrix")
    shown = confusion / confusion.sum(1, keepdim=True).clamp_min(1) if normalize else confusion
    import matplotlib.pyplot as plt

    n = len(class_names)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * n + 2.2, 0.5 * n + 1.2), layout="constrained")
    im = ax.imshow(shown.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i, j in itertools.product(range(n), range(n)):
        v = float(shown[i, j])
        ax.text(j, i, f"{v:.2f}" if normalize else f"{v:.0f}", ha="center", va="center",
                fontsize=7, color="white" if normalize and v > 0.6 else "black")  # fmt: skip
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.set_title(title or ("share of each true class's pixels" if normalize else "pixels"),
                 fontsize=9)  # fmt: skip
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax.figure


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    if min(h, w) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(h), int(w)


def _x(hw: Sequence[int]) -> str:
    return "×".join(str(int(v)) for v in hw)


def _canvas(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    ax.set_aspect("equal")
    ax.set_axis_off()
    return ax


def _node(
    ax: Axes,
    xy: tuple[float, float],
    text: str,
    *,
    color: Any,
    gid: str | None = None,
    size: tuple[float, float] = (0.84, 0.6),
    fontsize: float = 8,
) -> Any:
    """A rounded box centred at ``xy`` with ``text`` in it; returns the patch (for arrows)."""
    from matplotlib.patches import FancyBboxPatch

    (x, y), (w, h) = xy, size
    box = FancyBboxPatch(
        (x - w / 2, y - h / 2),
        w,
        h,
        boxstyle="round,pad=0,rounding_size=0.06",
        facecolor=color,
        edgecolor=_EDGE,
        linewidth=0.9,
    )
    ax.add_patch(box)
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, gid=gid)
    box.centre = (x, y)  # where arrows aim
    return box


def _arrow(
    ax: Axes, a: Any, b: Any, label: str | None = None, *, dashed: bool = False, **text_kw: Any
) -> None:
    """An arrow from box ``a`` to box ``b`` (clipped at their edges), labelled at its middle."""
    ax.annotate(
        "",
        xy=b.centre,
        xytext=a.centre,
        arrowprops={
            "arrowstyle": "-|>",
            "color": _EDGE,
            "lw": 1.1,
            "patchA": a,
            "patchB": b,
            "shrinkA": 1,
            "shrinkB": 1,
            "linestyle": "--" if dashed else "-",
        },
    )
    if label:
        (x0, y0), (x1, y1) = a.centre, b.centre
        kw = {"ha": "center", "va": "center", "fontsize": 7, "color": "0.2"} | text_kw
        box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"}
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, label, bbox=box, **kw)


def _cells(
    ax: Axes, xy: tuple[float, float], extent: tuple[float, float], hw: Sequence[int]
) -> None:
    """Thin white lines splitting the ``extent`` (width, height) rectangle centred at ``xy``
    into an h x w grid of cells."""
    (x, y), (width, height), (h, w) = xy, extent, hw
    left, bottom = x - width / 2, y - height / 2
    for k in range(1, w):
        ax.plot([left + k * width / w] * 2, [bottom, bottom + height], color="white", lw=0.6)
    for k in range(1, h):
        ax.plot([left, left + width], [bottom + k * height / h] * 2, color="white", lw=0.6)


def _trunk_taps(net: FCN) -> dict[int, int]:
    """Stride -> index in the net's flattened trunk of the layer first reaching that stride."""
    from torch import nn

    from fcnlib.backbones import stage_taps

    return stage_taps(nn.Sequential(*_trunk(net)))


def _trunk(net: FCN) -> list[nn.Module]:
    return [m for stage in net.features.values() for m in stage]


def _traced(
    net: nn.Module, layers: Mapping[str, nn.Module], shape: Sequence[int], call: Any = None
) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """Run ``call`` (default ``net``) in eval mode, without gradients, on zeros of ``shape``;
    return its result and the output shape, batch dimension dropped, of each of ``layers``
    (modules inside ``net``) by name. The first call of a module counts."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(module, inputs, output):
            shapes.setdefault(name, tuple(output.shape[1:]))

        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in layers.items()]
    weight = next(net.parameters())
    try:
        # batch norm on a 1 x 1 map needs its running statistics
        with eval_mode(net), torch.no_grad():
            out = (call or net)(torch.zeros(*shape, device=weight.device, dtype=weight.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    return out, shapes


def _map_sizes(net: FCN, size: int | tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Spatial size ``(h, w)`` of every named map of an :class:`~fcnlib.models.FCN` on a
    ``size`` input: ``pool1`` .. ``pool5`` (named by stride, as fcnlib's FCN names its stages),
    ``fc7``, and everything :meth:`~fcnlib.models.FCN.score_maps` returns."""
    h, w = _hw(size)
    trunk = _trunk(net)
    layers = {f"pool{s.bit_length() - 1}": trunk[i] for s, i in _trunk_taps(net).items()}
    shape = (1, net.in_channels, h, w)
    maps, shapes = _traced(net, {**layers, "fc7": net.fc}, shape, net.score_maps)
    sizes = {"image": (h, w)} | {name: shape[-2:] for name, shape in shapes.items()}
    return sizes | {name: tuple(t.shape[-2:]) for name, t in maps.items()}


def draw_pipeline(
    net: FCN | None = None, *, size: int | tuple[int, int] = 128, ax: Axes | None = None
) -> Figure:
    """The FCN idea in one line: image -> conv + pool stages (the stride doubles at each) ->
    coarse class scores -> upsampling -> a prediction for every pixel.

    Every map size is measured by running ``net`` on a zero image of ``size``.

    Args:
        net: an :class:`~fcnlib.models.FCN` without skips (FCN-32s); default
            ``fcn32s("tiny_vgg")`` with random weights (only the sizes matter).
        size: input side, or ``(H, W)``.
        ax: draw into this axes instead of a new figure.

    >>> import matplotlib.pyplot as plt
    >>> fig = draw_pipeline(size=128)  # image 128×128 ... pool5 4×4 ... prediction 128×128
    >>> plt.close(fig)
    """
    from fcnlib.models import fcn32s

    net = fcn32s("tiny_vgg") if net is None else net
    if net.skip_strides:
        raise ValueError(
            f"draw_pipeline draws a net without skips, got one with skips at strides "
            f"{net.skip_strides}; use draw_fusion_graph for FCN-16s / FCN-8s"
        )
    sizes = _map_sizes(net, size)
    pools = [(s, f"pool{s.bit_length() - 1}") for s in sorted(_trunk_taps(net))]
    steps = [("image", "image", sizes["image"], 1, "0.85")]
    steps += [
        (name, name, sizes[name], s, _BACKBONE_BLUES[min(k + 1, 6)])
        for k, (s, name) in enumerate(pools)
    ]
    steps += [("score_fr", "coarse scores", sizes["score_fr"], net.stride, _SCORE)]
    steps += [("score", "prediction", sizes["score"], 1, _OUTPUT)]

    ax = _canvas(ax, (10, 2.3))
    big, gap = 1.5, 0.95  # side of the input's square (others shrink as sqrt(map side)), gaps
    boxes, x = [], 0.0
    for gid, title, hw, stride, colour in steps:
        side = big * min(hw[0] / sizes["image"][0], 1) ** 0.5  # align="caffe" pads 100 at first
        x += side / 2 + (gap if boxes else 0)
        box = _node(ax, (x, 0), "", color=colour, size=(side, side))
        if max(hw) <= 8:  # coarse enough to draw its cells
            _cells(ax, (x, 0), (side, side), hw)
        ax.text(
            x,
            -big / 2 - 0.12,
            f"{title}\n{_x(hw)}" + (f"\n1/{stride}" if stride > 1 else ""),
            ha="center",
            va="top",
            fontsize=8,
            gid=gid,
        )
        boxes.append(box)
        x += side / 2
    labels = ["conv\n+ pool"] * len(pools) + ["fc6, fc7,\nscore_fr", f"upsample\n×{net.stride}"]
    for (a, b), label in zip(itertools.pairwise(boxes), labels, strict=True):
        _arrow(ax, a, b)
        middle = (a.get_x() + a.get_width() + b.get_x()) / 2  # of the gap between the boxes
        ax.text(middle, 0.08, label, ha="center", va="bottom", fontsize=7, color="0.2")
    ax.set_xlim(-0.05, x + 0.05)
    ax.set_ylim(-big / 2 - 0.75, big / 2 + 0.05)
    return ax.figure


def draw_fusion_graph(
    net: FCN | None = None, *, size: int | tuple[int, int] = 96, ax: Axes | None = None
) -> Figure:
    """The skip architecture in the manner of the paper's Figure 3, with measured map sizes.

    Top row: the backbone's pooling stages (pool1 .. pool5, strides 2 .. 32) and fc6-fc7. One
    row below per net: FCN-32s scores fc7 (``score_fr``) and upsamples 32x; FCN-16s adds
    ``score_pool4`` to the 2x-upsampled ``score_fr`` (``upscore2``) and upsamples 16x; FCN-8s
    adds ``score_pool3`` to the 2x-upsampled sum and upsamples 8x. Each box shows the map's
    size ``h×w``, measured by a forward pass of ``net`` on a zero image of ``size``.

    Args:
        net: an :class:`~fcnlib.models.FCN`; one row is drawn for stride 32 and one for each of
            its skips. Default ``fcn8s("tiny_vgg")`` with random weights (sizes only).
        size: input side, or ``(H, W)``.
        ax: draw into this axes instead of a new figure.

    >>> import matplotlib.pyplot as plt
    >>> fig = draw_fusion_graph(size=(96, 128))  # pool3 12×16, pool4 6×8, pool5 3×4
    >>> plt.close(fig)
    """
    from fcnlib.models import fcn8s

    net = fcn8s("tiny_vgg") if net is None else net
    sizes = _map_sizes(net, size)
    strides = [32, *net.skip_strides]  # one row per net: FCN-32s, FCN-16s, ...
    top = len(strides)  # rows are at y = top (backbone), top - 1 (FCN-32s), ..., 0

    def col(stride: int) -> int:  # pool1 .. pool5 in columns 1 .. 5, fc7 in column 6
        return stride.bit_length() - 1

    ax = _canvas(ax, (10, 1.05 * (top + 1)))
    prev = _node(ax, (0, top), f"image\n{_x(sizes['image'])}", color="0.88", gid="image")
    tops = {}
    for k, s in enumerate(sorted(_trunk_taps(net))):
        name = f"pool{col(s)}"
        tops[s] = _node(
            ax,
            (col(s), top),
            f"{name}\n{_x(sizes[name])}\n1/{s}",
            color=_BACKBONE_BLUES[min(k + 1, 6)],
            gid=name,
        )
        _arrow(ax, prev, tops[s])
        prev = tops[s]
    fc7 = _node(ax, (6, top), f"fc6–fc7\n{_x(sizes['fc7'])}", color=_BACKBONE_BLUES[6], gid="fc7")
    _arrow(ax, prev, fc7)

    score = _node(
        ax, (6, top - 1), f"score_fr\n{_x(sizes['score_fr'])}", color=_SCORE, gid="score_fr"
    )
    _arrow(ax, fc7, score)
    for row, s in enumerate(strides):
        y = top - 1 - row
        if s < 32:  # upsample the previous row's scores 2x and add this stride's skip
            pool = f"pool{col(s)}"
            skip = _node(
                ax,
                (col(s), y),
                f"score_{pool}\n{_x(sizes[f'score_{pool}'])}",
                color=_SCORE,
                gid=f"score_{pool}",
            )
            _arrow(ax, tops[s], skip)
            fuse = _node(
                ax,
                (col(s) + 1, y),
                f"+ fuse_{pool}\n{_x(sizes[f'fuse_{pool}'])}",
                color=_FUSE,
                gid=f"fuse_{pool}",
            )
            up = "upscore2" if s == 16 else f"upscore_pool{col(2 * s)}"
            _arrow(ax, score, fuse, f"{up} ×2")
            _arrow(ax, skip, fuse)
            score = fuse
        # the net of this row upsamples to the input: FCN-8s' is this net's own last layer
        gid = "score" if s == net.stride else f"FCN-{s}s"
        final = _node(
            ax, (7.9, y), f"FCN-{s}s\n{_x(sizes['image'])}", color=_OUTPUT, gid=gid, size=(1.0, 0.6)
        )
        _arrow(ax, score, final, f"upsample ×{s}")
    ax.set_xlim(-0.5, 8.45)
    ax.set_ylim(-0.35, top + 0.35)
    return ax.figure


def draw_fc_to_conv(
    classifier: nn.Module | None = None,
    *,
    native_size: int | None = None,
    size: int | None = None,
    ax: Axes | None = None,
) -> Figure:
    """A classifier beside its convolutionalized self (:func:`fcnlib.models.convolutionalize`).

    Top: on its native input the classifier's conv stack ends in a small map, flattened into
    one vector; fc6, fc7, fc8 are matrices, and the output is one score vector. Bottom: the same
    weights as convolutions (fc6 with a kernel covering that small map, fc7 and fc8 1 x 1) on a
    ``size`` input give a spatial map of score vectors. All shapes are measured by running both
    nets on zero images.

    Args:
        classifier: a VGG / AlexNet / TinyVGG-style classifier; default
            ``build_classifier("tiny_vgg")`` (random weights: only the shapes matter).
        native_size: the input side the classifier takes; default its ``native_size``
            attribute, else 224.
        size: the larger input side shown to the fully convolutional net; default twice the
            native size.
        ax: draw into this axes instead of a new figure.

    >>> import matplotlib.pyplot as plt
    >>> fig = draw_fc_to_conv(size=256)  # TinyVGG: pool5 8×8, heatmap 6×6
    >>> plt.close(fig)
    """
    from torch import nn

    from fcnlib.backbones import build_classifier, stage_taps, trunk_layers
    from fcnlib.models import convolutionalize

    classifier = build_classifier("tiny_vgg") if classifier is None else classifier
    native = native_size or getattr(classifier, "native_size", 224)
    size = 2 * native if size is None else size
    dense = convolutionalize(classifier)
    trunk = trunk_layers(classifier)
    stride = max(stage_taps(trunk))
    linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    fcs = {f"fc{6 + k}": m for k, m in enumerate(linears)}  # the paper's fc6, fc7, fc8
    convs = [m for m in dense.classifier if isinstance(m, nn.Conv2d)]
    convs = dict(zip(fcs, convs, strict=True))  # the same layers, convolutionalized
    _, top = _traced(classifier, {"trunk": trunk[-1], **fcs}, (1, 3, native, native))
    _, bottom = _traced(dense, {"trunk": dense.features[-1], **convs}, (1, 3, size, size))
    colours = ["#e5d8ef"] * (len(fcs) - 1) + [_SCORE]  # the class scores in orange

    ax = _canvas(ax, (10, 3.6))
    rows = {
        1: [("image", f"image\n3×{native}×{native}", "0.88"),
            ("trunk", f"conv + pool\nstride {stride}\n{_x(top['trunk'])}", _BACKBONE_BLUES[5]),
            ("flatten", f"flatten\n{math.prod(top['trunk'])}", "0.95")]
        + [(f"{name}-linear", f"{name}\nLinear\n{m.in_features} → {_x(top[name])}", colour)
           for (name, m), colour in zip(fcs.items(), colours, strict=True)],
        0: [("image-dense", f"image\n3×{size}×{size}", "0.88"),
            ("trunk-dense", f"conv + pool\nstride {stride}\n{_x(bottom['trunk'])}",
             _BACKBONE_BLUES[5]),
            None]  # no flatten
        + [(f"{name}-conv", f"{name}\n{_x(m.kernel_size)} conv\n{_x(bottom[name])}", colour)
           for (name, m), colour in zip(convs.items(), colours, strict=True)],
    }  # fmt: skip
    boxes: dict[int, list] = {}
    for y, row in rows.items():
        boxes[y] = [None] * len(row)
        for k, item in enumerate(row):
            if item is not None:
                gid, text, colour = item
                xy = (1.15 * k, 1.4 * y)
                boxes[y][k] = _node(ax, xy, text, color=colour, gid=gid, size=(0.95, 0.75))
        for a, b in itertools.pairwise(box for box in boxes[y] if box is not None):
            _arrow(ax, a, b)
    for a, b in zip(boxes[1][3:], boxes[0][3:], strict=True):  # fc6 .. fc8
        _arrow(ax, a, b, "same\nweights", dashed=True)
    ax.text(
        1.15 * 2,
        0.1,
        "no flatten:\nthe map stays",
        ha="center",
        va="bottom",
        fontsize=7,
        color="0.35",
        style="italic",
    )
    # what comes out: a column of class scores, or a grid of such columns seen from the front
    k, (h, w) = top[list(fcs)[-1]][0], bottom[list(fcs)[-1]][1:]
    right = 1.15 * len(rows[1]) - 0.35
    _node(ax, (right, 1.4), "", color=_SCORE, size=(0.14, 0.7))
    if k <= 16:
        _cells(ax, (right, 1.4), (0.14, 0.7), (k, 1))
    _node(ax, (right + 0.2, 0), "", color=_SCORE, size=(0.7 * w / max(h, w), 0.7 * h / max(h, w)))
    if max(h, w) <= 16:
        _cells(ax, (right + 0.2, 0), (0.7 * w / max(h, w), 0.7 * h / max(h, w)), (h, w))
    ax.text(
        right + 0.2, 1.4, f"one score vector\n({k} classes)", ha="left", va="center", fontsize=8
    )
    ax.text(
        right + 0.65, 0, f"a {_x((h, w))} map\nof score vectors", ha="left", va="center", fontsize=8
    )
    ax.set_xlim(-0.55, right + 1.75)
    ax.set_ylim(-0.45, 1.85)
    return ax.figure


def _stitch_sources(f: int, n: int) -> torch.Tensor:
    """For each pixel ``(p, q)`` of the dense ``(f n) x (f n)`` output of shift-and-stitch, the
    copy and cell it comes from: ``(f n, f n, 4)`` holding ``(dy, dx, i, j)``.

    Copy ``(dy, dx)`` is the input shifted up by ``dy`` and left by ``dx``; its cell ``(i, j)``
    lands at pixel ``(f i + dy, f j + dx)``, as in :func:`fcnlib.upsample.shift_and_stitch`.

    >>> _stitch_sources(2, 2)[1, 3].tolist()  # pixel (1, 3): copy (1, 1), cell (0, 1)
    [1, 1, 0, 1]
    """
    from fcnlib.upsample import stitch_sources

    return stitch_sources(f, (f * n, f * n))


def draw_shift_and_stitch(f: int = 2, *, n: int = 2, ax: Axes | None = None) -> Figure:
    """Shift-and-stitch on a small grid: ``f²`` shifted copies, each with its own colour, give
    ``n x n`` coarse outputs that interlace into the dense ``(f n) x (f n)`` output.

    Copy ``(dy, dx)`` runs the net on the input shifted up by ``dy`` and left by ``dx``; its
    coarse cell ``(i, j)`` fills pixel ``(f i + dy, f j + dx)``, the convention of
    :func:`fcnlib.upsample.shift_and_stitch`. Each cell shows its ``(i, j)``.

    >>> import matplotlib.pyplot as plt
    >>> plt.close(draw_shift_and_stitch(2))  # four copies of 2×2 cells -> one 4×4 output
    """
    import matplotlib.pyplot as plt

    if f not in (2, 3) or isinstance(f, bool):
        raise ValueError(f"f must be 2 or 3 (f² copies must stay readable), got {f!r}")
    if not 1 <= n <= 4:
        raise ValueError(f"n (coarse cells per side) must be from 1 to 4, got {n!r}")
    colours = plt.get_cmap("tab10").colors
    ax = _canvas(ax, (9, 4.2))
    fs = 9 if f * n <= 6 else 7

    markers = "os^Dv<>pPX"  # a marker per copy too, for readers who cannot tell colours

    def cell(x: float, y: float, copy: int, text: str, gid: str | None = None) -> None:
        colour = (*colours[copy][:3], 0.55)
        ax.add_patch(plt.Rectangle((x, y), 1, 1, facecolor=colour, edgecolor="white", lw=1.5))
        ax.text(x + 0.5, y + 0.42, text, ha="center", va="center", fontsize=fs, gid=gid)
        ax.plot(x + 0.18, y + 0.8, markers[copy], ms=4, color=colours[copy], mec="0.2", mew=0.5)

    # the copies, laid out as an f x f block of n x n grids; y grows downwards in rows
    step = n + 1.2
    for dy in range(f):
        for dx in range(f):
            x0, y0 = dx * step, -dy * step
            for i in range(n):
                for j in range(n):
                    cell(x0 + j, y0 - i - 1, dy * f + dx, f"{i},{j}")
            ax.text(
                x0 + n / 2, y0 + 0.1, f"copy ({dy}, {dx})", ha="center", va="bottom", fontsize=8
            )
    # the dense output: pixel (p, q) takes the colour and the (i, j) of its source
    left = f * step + 1.5
    top = (f * n - (f - 1) * step - n) / 2  # centred on the block of copies
    for p, row in enumerate(_stitch_sources(f, n).tolist()):
        for q, (dy, dx, i, j) in enumerate(row):
            cell(left + q, top - p - 1, dy * f + dx, f"{i},{j}", gid=f"dense {p},{q}")
    ax.text(
        left + f * n / 2,
        top + 0.1,
        f"dense output, {f * n}×{f * n}",
        ha="center",
        va="bottom",
        fontsize=8,
    )
    ax.annotate(
        "",
        xy=(left - 0.3, top - f * n / 2),
        xytext=(left - 1.3, top - f * n / 2),
        arrowprops={"arrowstyle": "-|>", "color": _EDGE, "lw": 1.5},
    )
    ax.set_title(
        f"f = {f}: cell (i, j) of copy (δy, δx) fills pixel ({f}i + δy, {f}j + δx)", fontsize=9
    )
    ax.set_xlim(-0.2, left + f * n + 0.2)
    ax.set_ylim(-(f - 1) * step - n - 0.2, 0.6)
    return ax.figure


def _fmt(v: float) -> str:
    return f"{round(float(v), 3):g}"


def draw_transposed_conv(
    x: Sequence[float] = (1.0, 3.0, 2.0),
    kernel: Sequence[float] = (0.5, 1.0, 0.5),
    *,
    stride: int = 2,
    ax: Axes | None = None,
) -> Figure:
    """A 1-D transposed convolution as a scatter: input ``x[i]`` writes ``x[i] * kernel`` into
    the output starting at ``stride * i``, and overlapping writes add up.

    The output has ``(len(x) - 1) * stride + len(kernel)`` values, those of
    ``F.conv_transpose1d(x, kernel, stride=stride)`` (no padding). With the default triangle
    kernel and stride 2 the sums interpolate linearly between the inputs: upsampling.

    >>> import matplotlib.pyplot as plt
    >>> fig = draw_transposed_conv([1, 3, 2], [0.5, 1, 0.5], stride=2)
    >>> [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "output"]
    ['0.5', '1', '2', '3', '2.5', '2', '1']
    >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt

    xs = torch.as_tensor(x, dtype=torch.float64).flatten()
    w = torch.as_tensor(kernel, dtype=torch.float64).flatten()
    if not (1 <= len(xs) <= 6 and 1 <= len(w) <= 6) or not 1 <= stride <= 4:
        raise ValueError(
            f"keep the picture readable: 1-6 inputs, a kernel of 1-6 taps and a stride of 1-4; "
            f"got {len(xs)} inputs, {len(w)} taps, stride {stride}"
        )
    n_out = (len(xs) - 1) * stride + len(w)
    parts = torch.zeros(len(xs), n_out, dtype=torch.float64)
    for i, v in enumerate(xs):
        parts[i, stride * i : stride * i + len(w)] = v * w  # input i's scaled copy of the kernel
    colours = plt.get_cmap("tab10").colors
    ax = _canvas(ax, (min(2.2 + 0.75 * n_out, 10), 1.1 + 0.48 * (len(xs) + 2)))

    def cell(col: float, row: float, text: str, colour: Any, gid: str | None = None) -> None:
        ax.add_patch(
            plt.Rectangle((col, -row), 0.94, 0.8, facecolor=colour, edgecolor=_EDGE, lw=0.6)
        )
        ax.text(col + 0.47, -row + 0.4, text, ha="center", va="center", fontsize=9, gid=gid)

    def label(row: float, text: str) -> None:
        ax.text(-0.15, -row + 0.4, text, ha="right", va="center", fontsize=9)

    # input i sits above the middle of the span it writes to, so the strides show
    label(0, "input x")
    for i, v in enumerate(xs):
        cell(stride * i + (len(w) - 1) / 2, 0, _fmt(v), (*colours[i][:3], 0.75), gid="input")
    for i in range(len(xs)):
        label(i + 1.4, f"x[{i}] · w")
        for t in range(len(w)):
            cell(stride * i + t, i + 1.4, _fmt(parts[i, stride * i + t]), (*colours[i][:3], 0.3))
    row = len(xs) + 1.8
    label(row, "sum = output")
    for o, v in enumerate(parts.sum(0)):
        cell(o, row, _fmt(v), "white", gid="output")
    ax.plot([-0.1, n_out], [-row + 0.95] * 2, color=_EDGE, lw=1)
    ax.set_title(
        f"transposed convolution, stride {stride}, kernel w = ({', '.join(_fmt(v) for v in w)})",
        fontsize=9,
    )
    ax.set_xlim(-1.6, n_out + 0.1)
    ax.set_ylim(-row - 0.1, 0.9)
    return ax.figure


def _crop_geometry(net: FCN, h: int, w: int) -> tuple[dict, tuple, list, list]:
    """``(map sizes, first conv's padding, score_fr unit centres per axis, crop per axis)``."""
    from torch import nn

    from fcnlib.receptive_field import CoordMap, coord_map, crop_offset

    sizes = _map_sizes(net, (h, w))
    up = getattr(net, net.final_name)
    to_score = [*net.features.values(), net.fc, net.score_fr]
    first = next(m for s in net.features.values() for m in s.modules() if isinstance(m, nn.Conv2d))
    pad = tuple(int(p) for p in (first.padding if isinstance(first.padding, tuple) else (0, 0)))
    centres, crop = [], []
    for axis in (-2, -1):  # height, then width
        score = coord_map(to_score, axis=axis, input_size=(h, w))
        n = sizes["score_fr"][axis]
        centres.append([score.inverse()(j) for j in range(n)])  # unit j over input x
        upmap = coord_map([*to_score, up], axis=axis, input_size=(h, w))
        crop.append(crop_offset(upmap, CoordMap.identity()))
    return sizes, pad, centres, crop


def draw_crop_geometry(
    net: FCN | None = None,
    *,
    size: int | tuple[int, int] = 224,
    image: torch.Tensor | None = None,
    corner: int | None = None,
    legend: bool = True,
    ax: Axes | None = None,
) -> Figure:
    """Where an FCN-32s's maps lie over its input, in input pixels: the input, the input as the
    first convolution sees it (zero-padded), the centres of the ``score_fr`` units, the final
    upsampling's output and the window that the crop keeps.

    Nothing is typed in: the padding is the first convolution's, the map sizes are measured by
    a forward pass on a zero image of ``size``, the unit centres come from the layers'
    coordinate maps (:func:`fcnlib.receptive_field.coord_map`) and the crop from
    :func:`fcnlib.receptive_field.crop_offset`. Pixel ``y`` of the upsampled map lies over input
    pixel ``y - crop``, so the crop window lands on the input. For VGG16 with ``align="caffe"``
    this is the original FCN-32s: conv1_1 padded by 100, ``upscore`` cropped at 19.

    Args:
        net: an :class:`~fcnlib.models.FCN` without skips; default ``fcn32s("vgg16",
            align="caffe")`` built on the meta device (shapes only, no weights in memory).
        size: input side, or ``(H, W)``; taken from ``image`` when one is given.
        image: float ``(3, H, W)`` in [0, 1], drawn as the input (else a grey square).
        corner: show only the top-left corner, from the padding's edge to this many pixels into
            the input, with the centre of ``score_fr`` unit (0, 0) written out.
        legend: add a legend naming each element with its numbers.
        ax: draw into this axes instead of a new figure.

    >>> import matplotlib.pyplot as plt
    >>> from fcnlib.models import fcn32s
    >>> net = fcn32s("tiny_vgg", align="caffe")
    >>> fig = draw_crop_geometry(net, size=64)
    >>> [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "crop"]  # net.crop_offsets
    ['crop 83']
    >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt

    from fcnlib.models import fcn32s

    if net is None:
        with torch.device("meta"):
            net = fcn32s("vgg16", n_classes=21, pretrained=False, align="caffe")
    if net.skip_strides:
        raise ValueError(
            f"draw_crop_geometry draws a net without skips (FCN-32s), got one with skips at "
            f"strides {net.skip_strides}"
        )
    h, w = _hw(size) if image is None else (int(image.shape[-2]), int(image.shape[-1]))
    sizes, pad, centres, crop = _crop_geometry(net, h, w)
    name = net.final_name  # "upscore"
    (uh, uw), stride = sizes[name], net.stride

    ax = _canvas(ax, (7, 6))
    ax.add_patch(
        plt.Rectangle(
            (-pad[1] - 0.5, -pad[0] - 0.5), w + 2 * pad[1], h + 2 * pad[0], facecolor="0.9",
            edgecolor="0.45", hatch="//", lw=0.8, zorder=0, gid="padded",
            label=f"conv1_1's input: zero-padded by {pad[1]}, "
            f"{_x((h + 2 * pad[0], w + 2 * pad[1]))}",
        )
    )  # fmt: skip
    if image is not None:
        ax.imshow(_hwc(_float_image(image)), extent=(-0.5, w - 0.5, h - 0.5, -0.5), zorder=1)
    else:
        ax.add_patch(plt.Rectangle((-0.5, -0.5), w, h, facecolor="0.75", zorder=1))
    ax.add_patch(
        plt.Rectangle(
            (-crop[1] - 0.5, -crop[0] - 0.5), uw, uh, fill=False, edgecolor="C1", lw=1.8,
            ls="--", zorder=3, gid=name, label=f"{name} output {_x((uh, uw))}",
        )
    )  # fmt: skip
    ax.add_patch(
        plt.Rectangle(
            (-0.5, -0.5), w, h, fill=False, edgecolor="C2", lw=2.2, zorder=4, gid="window",
            label=f"crop window: {name}[{crop[0]}:{crop[0] + h}, {crop[1]}:{crop[1] + w}]",
        )
    )  # fmt: skip
    ys, xs = torch.meshgrid(torch.tensor(centres[0]), torch.tensor(centres[1]), indexing="ij")
    ax.plot(
        xs.flatten(), ys.flatten(), "o", ms=3.5, color="C0", mec="white", mew=0.5, zorder=5,
        gid="score_fr", label=f"score_fr {_x(sizes['score_fr'])}: unit centres, {stride} px apart",
    )  # fmt: skip
    # the two offsets, as dimension lines across the left border, halfway down
    arrow = {"arrowstyle": "<->", "lw": 1.2, "shrinkA": 0, "shrinkB": 0}
    text = {
        "fontsize": 8,
        "va": "center",
        "clip_on": True,
        "zorder": 6,
        "bbox": {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
    }
    seen = h if corner is None else min(corner, h)  # input rows in view
    y_pad, y_crop = 0.5 * (seen - 1), 0.5 * (seen - 1) + 0.08 * seen
    ax.annotate("", (-0.5, y_pad), (-pad[1] - 0.5, y_pad), arrowprops=arrow | {"color": "0.2"})
    ax.text(-pad[1] / 2 - 0.5, y_pad - 0.04 * seen, f"pad {pad[1]}", color="0.2", ha="center",
            gid="pad", **text)  # fmt: skip
    if crop[1]:
        ax.annotate(
            "", (-0.5, y_crop), (-crop[1] - 0.5, y_crop), arrowprops=arrow | {"color": "C1"}
        )
        ax.text(
            -crop[1] - 2.5, y_crop, f"crop {crop[1]}", color="C1", ha="right", gid="crop", **text
        )
    margin = 0.04 * (w + 2 * pad[1])
    left = min(-pad[1], -crop[1]) - 0.5 - margin
    right = max(w + pad[1], uw - crop[1]) - 0.5 + margin
    top = min(-pad[0], -crop[0]) - 0.5 - margin
    bottom = max(h + pad[0], uh - crop[0]) - 0.5 + margin
    if corner is not None:
        right = bottom = min(corner, h, w) - 0.5
        y0, x0 = centres[0][0], centres[1][0]
        ax.annotate(
            f"score_fr unit (0, 0)\ncentred at ({y0:g}, {x0:g})", (x0, y0), (x0 + 0.2 * seen,
            y0 + 0.45 * seen), fontsize=8, color="C0", gid="unit0", zorder=6, bbox=text["bbox"],
            arrowprops={"arrowstyle": "->", "color": "C0", "lw": 1},
        )  # fmt: skip
    ax.set(xlim=(left, right), ylim=(bottom, top))
    ax.set_title(
        f"input {_x((h, w))}: pad {pad[1]}, crop {crop[1]} -- the window is the input", fontsize=9
    )
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    return ax.figure

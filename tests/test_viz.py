"""Tests for fcnlib.viz: the VOC palette, colorize/overlay, that the figures get built, and that
the architecture figures show the nets' own numbers."""

import itertools
import math
import re

import matplotlib

matplotlib.use("Agg")  # no display needed; must come before pyplot is imported

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.text import Text
from torch import nn
from torch.testing import assert_close

from fcnlib.backbones import build_classifier
from fcnlib.models import convolutionalize, fcn8s, fcn16s, fcn32s
from fcnlib.upsample import shift_and_stitch
from fcnlib.viz import (
    _stitch_sources,
    colorize,
    draw_crop_geometry,
    draw_fc_to_conv,
    draw_fusion_graph,
    draw_pipeline,
    draw_shift_and_stitch,
    draw_transposed_conv,
    legend_handles,
    overlay,
    plot_curves,
    plot_score_bars,
    show_images,
    show_segmentation,
    voc_palette,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------------- palette


@pytest.mark.parametrize(
    ("cls", "rgb"),
    [
        (0, (0, 0, 0)),
        (1, (128, 0, 0)),
        (2, (0, 128, 0)),
        (3, (128, 128, 0)),
        (4, (0, 0, 128)),
        (15, (192, 128, 128)),  # person
        (20, (0, 64, 128)),  # tv/monitor
    ],
)
def test_palette_first_classes(cls, rgb):
    assert tuple(voc_palette()[cls].tolist()) == rgb


def test_palette_shape_and_void():
    pal = voc_palette()
    assert pal.shape == (256, 3) and pal.dtype == torch.uint8
    assert tuple(pal[255].tolist()) == (224, 224, 192)
    assert len(set(map(tuple, pal.tolist()))) == 256  # every class its own colour
    assert_close(voc_palette(21), pal[:21])


# --------------------------------------------------------------------------------- colorize


def test_colorize_single_and_batch():
    label = torch.tensor([[0, 1], [15, 255]])
    rgb = colorize(label)
    assert rgb.shape == (3, 2, 2) and rgb.dtype == torch.uint8
    assert rgb[:, 0, 0].tolist() == [0, 0, 0]
    assert rgb[:, 0, 1].tolist() == [128, 0, 0]
    assert rgb[:, 1, 0].tolist() == [192, 128, 128]
    assert rgb[:, 1, 1].tolist() == [224, 224, 192]
    batch = colorize(torch.stack([label, label.flip(0)]))
    assert batch.shape == (2, 3, 2, 2)
    assert_close(batch[0], rgb)


def test_colorize_custom_palette_and_ignore():
    palette = torch.tensor([[10, 20, 30], [40, 50, 60]], dtype=torch.uint8)
    rgb = colorize(torch.tensor([[0, 1, -1]]), palette=palette, ignore_index=-1)
    assert rgb[:, 0, 1].tolist() == [40, 50, 60]
    assert rgb[:, 0, 2].tolist() == [224, 224, 192]  # void colour even for a custom palette
    label = torch.tensor([[0, 1, 255]])
    for wrong in (True, 255.0, 3.5):  # True would paint class 1 as void, a float nothing
        with pytest.raises(TypeError, match="ignore_index must be an int"):
            colorize(label, ignore_index=wrong)
        with pytest.raises(TypeError, match="ignore_index must be an int"):
            overlay(torch.rand(3, 1, 3), label[0].unsqueeze(0), ignore_index=wrong)


def test_colorize_errors():
    with pytest.raises(TypeError, match="argmax"):
        colorize(torch.rand(4, 4))
    with pytest.raises(ValueError, match="negative"):
        colorize(torch.tensor([[0, -1]]))
    with pytest.raises(ValueError, match="palette"):
        colorize(torch.tensor([[0, 5]]), palette=voc_palette(3))
    with pytest.raises(ValueError, match="shape"):
        colorize(torch.zeros(4, dtype=torch.long))


# ---------------------------------------------------------------------------------- overlay


def test_overlay_tints_only_objects():
    image = torch.full((3, 4, 4), 0.5)
    label = torch.zeros(4, 4, dtype=torch.long)
    label[0, 0] = 1  # an object
    label[3, 3] = 255  # void
    out = overlay(image, label, alpha=0.5)
    assert out.shape == (3, 4, 4) and out.dtype == torch.float32
    assert_close(out[:, 1:3], image[:, 1:3])  # background untouched
    assert_close(out[:, 3, 3], image[:, 3, 3])  # void untouched
    assert_close(out[:, 0, 0], torch.tensor([0.5 * 0.5 + 0.5 * 128 / 255, 0.25, 0.25]))
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_overlay_accepts_uint8_and_checks():
    image = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    out = overlay(image, torch.zeros(2, 2, dtype=torch.long))
    assert_close(out, torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="one size"):
        overlay(image, torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, torch.zeros(2, 2, dtype=torch.long), alpha=2)


# ---------------------------------------------------------------------------------- figures


def _batch(n=3, size=8):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    labels = torch.randint(0, 4, (n, size, size), generator=g)
    return images, labels


def test_show_segmentation_columns():
    images, labels = _batch()
    fig = show_segmentation(images)
    assert len(fig.axes) == 3
    fig = show_segmentation(images, labels, labels.flip(-1), titles=["a", "b", "c"])
    assert len(fig.axes) == 3 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "ground truth", "prediction"]
    assert fig.axes[3].get_ylabel() == "b"


def test_show_segmentation_several_preds_legend_and_max_items():
    images, labels = _batch(n=5)
    preds = {"FCN-32s": labels.roll(1, -1), "FCN-8s": labels}
    names = ["background", "circle", "square", "triangle"]
    fig = show_segmentation(images, labels, preds, class_names=names, max_items=2)
    assert len(fig.axes) == 2 * 4
    assert [ax.get_title() for ax in fig.axes[:4]] == ["image", "ground truth", "FCN-32s", "FCN-8s"]
    legend_texts = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert legend_texts == names
    fig.canvas.draw()  # the layout must actually render


def test_show_images_grid():
    images, _ = _batch(n=5)
    fig = show_images(images, ncols=3, titles=list("abcde"))
    assert len(fig.axes) == 5
    assert fig.axes[4].get_title() == "e"
    fig = show_images(images[:, 0])  # greyscale
    assert len(fig.axes) == 5


def test_legend_handles():
    handles = legend_handles(["background", "aeroplane"])
    assert all(isinstance(h, Patch) for h in handles)
    assert [h.get_label() for h in handles] == ["background", "aeroplane"]
    assert handles[1].get_facecolor()[:3] == pytest.approx((128 / 255, 0, 0))


# ----------------------------------------------------------------------------------- curves


def test_plot_curves_one_run():
    history = {"step": [0, 10, 20], "loss": [2.0, 1.0, 0.5], "mean_iu": [0.1, 0.3, 0.4]}
    fig = plot_curves(history, title="run")
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "mean_iu"]
    assert list(ax.get_lines()[0].get_xdata()) == [0, 10, 20]
    assert ax.get_title() == "run"


def test_plot_curves_records_and_sparse_metric():
    records = [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5, "mean_iu": 0.2}]
    fig = plot_curves(records)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["mean_iu"].get_xdata()) == [1]  # the missing entry is skipped, not plotted


def test_plot_curves_several_runs_on_given_axes():
    runs = {
        "FCN-32s": {"step": [0, 1, 2], "mean_iu": [0.1, 0.2, 0.3]},
        "FCN-8s": {"step": [0, 1, 2], "mean_iu": [0.2, 0.3, 0.5]},
    }
    _, ax = plt.subplots()
    out = plot_curves(runs, keys=["mean_iu"], ax=ax)
    assert out is ax
    assert [line.get_label() for line in ax.get_lines()] == ["FCN-32s", "FCN-8s"]
    assert ax.get_legend() is not None


def test_plot_score_bars_draws_each_run_and_metric_at_its_value():
    from fcnlib.metrics import scores

    label = torch.tensor([[0, 0, 1, 1]])
    measured = scores(torch.tensor([[0, 1, 1, 1]]), label, 2)  # a Scores: pixel acc 3/4
    results = {"net": measured, "mine": {"pixel_acc": 0.5, "mean_iu": math.nan, "near": 0.2}}
    fig = plot_score_bars(results, metrics=["pixel_acc", "mean_iu"])
    (ax,) = fig.axes
    assert [round(c.patches[0].get_height(), 6) for c in ax.containers] == [75.0, 50.0]
    assert [len(c.patches) for c in ax.containers] == [2, 1]  # the nan bar is left out
    assert_close(ax.containers[0].patches[1].get_height(), 100 * measured.mean_iu)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pixel acc", "mean IU"]
    name = "accuracy on thin bars"
    (wrapped,) = plot_score_bars({"a": {name: 0.1}}, metrics=[name], title="t").axes
    assert wrapped.get_title() == "t"
    assert wrapped.get_xticklabels()[0].get_text() == "accuracy on\nthin bars"  # two lines
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["net", "mine"]
    assert "75.0" in [t.get_text() for t in ax.texts]  # each bar carries its value
    _, given = plt.subplots()
    mine = {"mine": results["mine"]}
    assert plot_score_bars(mine, metrics=["near"], ax=given, percent=False) is given
    with pytest.raises(KeyError, match="near"):
        plot_score_bars({"net": measured}, metrics=["near"])


def test_plot_curves_errors():
    with pytest.raises(KeyError, match="accuracy"):
        plot_curves({"step": [0], "loss": [1.0]}, keys=["accuracy"])
    with pytest.raises(ValueError, match="values"):
        plot_curves({"step": [0, 1], "loss": [1.0]})


# ------------------------------------------------------------------- architecture figures


def _drawn(fig, gid):
    """The texts drawn with this gid, left to right."""
    texts = [t for t in fig.findobj(Text) if t.get_gid() == gid]
    return [t.get_text() for t in sorted(texts, key=lambda t: t.get_position()[0])]


def _size(text):
    """The last 'h×w' (or 'c×h×w') written in a label, as a tuple of ints."""
    return tuple(int(v) for v in re.findall(r"\d+(?:×\d+)+", text)[-1].split("×"))


def _pool_sizes(net, x):
    """pool1, pool2, ... of an FCN's trunk on x, read off its max pools by forward hooks."""
    pools = [m for m in net.features.modules() if isinstance(m, nn.MaxPool2d)]
    sizes = []
    hooks = [p.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-2:])) for p in pools]
    with torch.no_grad():
        maps = net.eval().score_maps(x)
    for h in hooks:
        h.remove()
    return {f"pool{k + 1}": tuple(s) for k, s in enumerate(sizes)}, maps


def _no_text_overlaps(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.findobj(Text) if t.get_text().strip()]
    for a, b in itertools.combinations(boxes, 2):
        overlap_w = min(a.x1, b.x1) - max(a.x0, b.x0)
        overlap_h = min(a.y1, b.y1) - max(a.y0, b.y0)
        assert overlap_w <= 1 or overlap_h <= 1, f"texts overlap: {a} and {b}"


@pytest.mark.parametrize(
    ("builder", "size", "align"),
    [(fcn8s, (96, 128), "same"), (fcn16s, 70, "same"), (fcn8s, (64, 45), "caffe")],
)
def test_fusion_graph_sizes_are_the_nets(builder, size, align):
    net = builder("tiny_vgg", n_classes=5, align=align)
    h, w = (size, size) if isinstance(size, int) else size
    pools, maps = _pool_sizes(net, torch.zeros(1, 3, h, w))
    fig = draw_fusion_graph(net, size=size)
    assert isinstance(fig, Figure)
    for name, hw in pools.items():  # pool1 .. pool5, strides 2 .. 32
        (text,) = _drawn(fig, name)
        assert _size(text) == hw and f"1/{2 ** int(name[-1])}" in text
    with torch.no_grad():
        assert _size(_drawn(fig, "fc7")[0]) == tuple(net.fc(maps["pool5"]).shape[-2:])
    skips = [f"pool{int(math.log2(s))}" for s in net.skip_strides]  # pool4, pool3
    for name in ["score_fr", "score", *[f"{k}_{p}" for p in skips for k in ("score", "fuse")]]:
        (text,) = _drawn(fig, name)
        assert _size(text) == tuple(maps[name].shape[-2:]), name
    assert _size(_drawn(fig, "score")[0]) == (h, w)
    for s in (32, 16):  # the coarser nets' rows end at the input size too
        if s > net.stride:
            assert _size(_drawn(fig, f"FCN-{s}s")[0]) == (h, w)
    _no_text_overlaps(fig)


@pytest.mark.parametrize("size", [128, (100, 60)])
def test_pipeline_sizes_are_the_nets(size):
    net = fcn32s("tiny_vgg", n_classes=4)
    h, w = (size, size) if isinstance(size, int) else size
    pools, maps = _pool_sizes(net, torch.zeros(1, 3, h, w))
    fig = draw_pipeline(net, size=size)
    for name, hw in pools.items():
        assert _size(_drawn(fig, name)[0]) == hw
    assert _size(_drawn(fig, "score_fr")[0]) == tuple(maps["score_fr"].shape[-2:])
    assert _size(_drawn(fig, "score")[0]) == (h, w) == tuple(maps["score"].shape[-2:])
    _no_text_overlaps(fig)


@pytest.mark.parametrize(
    "draw", [draw_fusion_graph, draw_pipeline, draw_crop_geometry, draw_fc_to_conv]
)
def test_figure_helpers_give_every_layer_its_own_mode_back(draw):
    # a net fine-tuned with one layer frozen in eval mode (as a frozen BatchNorm is)
    if draw is draw_fc_to_conv:
        net = build_classifier("tiny_vgg")
        frozen = net.classifier[0]
    else:
        builder = fcn8s if draw is draw_fusion_graph else fcn32s
        net = builder("tiny_vgg", n_classes=4)
        frozen = net.score_fr
    net.train()
    frozen.eval()
    draw(net, size=96)
    assert net.training and not frozen.training
    assert sum(not m.training for m in net.modules()) == 1


def test_pipeline_refuses_skips_and_draws_into_axes():
    with pytest.raises(ValueError, match="draw_fusion_graph"):
        draw_pipeline(fcn8s("tiny_vgg"))
    fig, ax = plt.subplots()
    assert draw_pipeline(ax=ax) is fig


@pytest.mark.parametrize("size", [96, 200, 256])
def test_fc_to_conv_shapes_are_the_nets(size):
    clf = build_classifier("tiny_vgg").eval()
    dense = convolutionalize(clf).eval()
    fig = draw_fc_to_conv(clf, size=size)
    assert isinstance(fig, Figure)
    with torch.no_grad():
        pool5 = clf.features(torch.zeros(1, 3, 96, 96))
        logits = clf(torch.zeros(1, 3, 96, 96))
        pool5_big = dense.features(torch.zeros(1, 3, size, size))
        heat = dense(torch.zeros(1, 3, size, size))
        fc6 = dense.classifier[0](pool5_big)
    assert _size(_drawn(fig, "trunk")[0]) == tuple(pool5.shape[1:])
    assert f"\n{pool5[0].numel()}" in _drawn(fig, "flatten")[0]
    assert _drawn(fig, "fc8-linear")[0].endswith(f"→ {logits.shape[1]}")
    assert _size(_drawn(fig, "trunk-dense")[0]) == tuple(pool5_big.shape[1:])
    assert _size(_drawn(fig, "fc6-conv")[0]) == tuple(fc6.shape[1:])
    assert "3×3 conv" in _drawn(fig, "fc6-conv")[0] and "1×1 conv" in _drawn(fig, "fc8-conv")[0]
    assert _size(_drawn(fig, "fc8-conv")[0]) == tuple(heat.shape[1:])
    _no_text_overlaps(fig)


@pytest.mark.parametrize(("f", "n"), [(2, 1), (2, 2), (3, 2), (2, 4)])
def test_shift_and_stitch_interlacing_is_a_bijection_and_fcnlibs(f, n):
    src = _stitch_sources(f, n)  # (f n, f n, 4): (dy, dx, i, j) per dense pixel
    assert src.shape == (f * n, f * n, 4)
    assert len({tuple(s) for s in src.flatten(0, 1).tolist()}) == (f * n) ** 2  # one-to-one
    assert int(src[..., :2].max()) == f - 1 and int(src[..., 2:].max()) == n - 1  # onto

    def which(batch):  # each copy's output: (copy index, i, j) at cell (i, j)
        b, _, h, w = batch.shape
        i, j = torch.meshgrid(torch.arange(h // f), torch.arange(w // f), indexing="ij")
        k = torch.arange(b).view(b, 1, 1).expand(b, h // f, w // f)
        return torch.stack([k, i.expand_as(k), j.expand_as(k)], dim=1).float()

    dense = shift_and_stitch(which, torch.zeros(1, 1, f * n, f * n), f)[0].long()
    assert torch.equal(dense[0], src[..., 0] * f + src[..., 1])  # copies in (dy, dx) order
    assert torch.equal(dense[1], src[..., 2]) and torch.equal(dense[2], src[..., 3])

    fig = draw_shift_and_stitch(f, n=n)
    for p, q in itertools.product(range(f * n), repeat=2):
        assert _drawn(fig, f"dense {p},{q}") == [f"{src[p, q, 2]},{src[p, q, 3]}"]
    _no_text_overlaps(fig)


@pytest.mark.parametrize(
    ("x", "w", "stride"),
    [
        ((1.0, 3.0, 2.0), (0.5, 1.0, 0.5), 2),
        ((2.0, -1.0, 4.0, 1.0), (1.0, 2.0, 3.0), 1),
        ((1.5, 2.0), (0.25, 0.75, 0.75, 0.25), 2),
        ((3.0, 1.0, 2.0), (1.0, -2.0), 3),  # gaps: the kernel is shorter than the stride
    ],
)
def test_transposed_conv_sums_are_conv_transpose1d(x, w, stride):
    fig = draw_transposed_conv(x, w, stride=stride)
    drawn = torch.tensor([float(t) for t in _drawn(fig, "output")], dtype=torch.float64)
    want = F.conv_transpose1d(
        torch.tensor(x, dtype=torch.float64).view(1, 1, -1),
        torch.tensor(w, dtype=torch.float64).view(1, 1, -1),
        stride=stride,
    ).flatten()
    assert_close(drawn, want, rtol=0, atol=6e-4)  # printed to 3 decimals
    assert [float(t) for t in _drawn(fig, "input")] == list(x)
    _no_text_overlaps(fig)


def _patch(fig, gid):
    (patch,) = [p for p in fig.axes[0].patches if p.get_gid() == gid]
    return patch


@pytest.mark.parametrize(("align", "size"), [("caffe", (64, 45)), ("caffe", 37), ("same", 50)])
def test_crop_geometry_is_the_nets(align, size):
    net = fcn32s("tiny_vgg", n_classes=3, align=align).eval()
    h, w = (size, size) if isinstance(size, int) else size
    with torch.no_grad():
        maps = net.score_maps(torch.rand(1, 3, h, w))
    fig = draw_crop_geometry(net, size=size, corner=30)
    c, pad = net.crop_offsets["upscore"], net.features["pool2"][0].padding[0]
    up = _patch(fig, "upscore")  # upscore's pixels, placed over the input
    assert up.get_xy() == (-c - 0.5, -c - 0.5)
    assert (up.get_height(), up.get_width()) == tuple(maps["upscore"].shape[-2:])
    # the window drawn over the input is what the net's crop keeps: its output, exactly
    window = _patch(fig, "window")
    assert window.get_xy() == (-0.5, -0.5) and (window.get_height(), window.get_width()) == (h, w)
    assert_close(maps["upscore"][..., c : c + h, c : c + w], maps["score"], rtol=0, atol=0)
    padded = _patch(fig, "padded")
    assert padded.get_xy() == (-pad - 0.5, -pad - 0.5) and padded.get_width() == w + 2 * pad
    # score_fr unit j lies under upscore's pixel (k - 1) / 2 - p + 32 j (kernel k, padding p),
    # i.e. over input pixel (k - 1) / 2 - p + 32 j - c; one dot per unit
    (dots,) = [line for line in fig.axes[0].lines if line.get_gid() == "score_fr"]
    k, p = net.upscore.kernel_size[0], net.upscore.padding[0]
    n = maps["score_fr"].shape[-1] * maps["score_fr"].shape[-2]
    xs = sorted(set(dots.get_xdata().tolist()))
    assert len(dots.get_xdata()) == n
    assert xs == [(k - 1) / 2 - p - c + 32 * j for j in range(maps["score_fr"].shape[-1])]
    assert _drawn(fig, "crop") == ([f"crop {c}"] if c else [])
    assert _drawn(fig, "pad") == [f"pad {pad}"]


def test_crop_geometry_default_is_the_original_fcn32s():
    fig = draw_crop_geometry(size=500)  # VGG16, align="caffe", on the meta device
    assert _drawn(fig, "pad") == ["pad 100"] and _drawn(fig, "crop") == ["crop 19"]
    with pytest.raises(ValueError, match="without skips"):
        draw_crop_geometry(fcn8s("tiny_vgg", align="caffe"), size=64)


def test_architecture_figure_errors():
    with pytest.raises(ValueError, match="f must be"):
        draw_shift_and_stitch(4)
    with pytest.raises(ValueError, match="readable"):
        draw_transposed_conv(range(8), (1.0, 1.0))


def test_plot_confusion_rows_are_shares_of_the_true_class():
    import matplotlib.pyplot as plt

    cm = torch.tensor([[90, 6, 4], [3, 7, 0], [0, 0, 0]])
    from fcnlib import viz

    fig = viz.plot_confusion(cm, ["bg", "a", "b"])
    shown = fig.axes[0].images[0].get_array()
    assert shown[0].sum() == pytest.approx(1.0) and shown[1, 1] == pytest.approx(0.7)
    assert shown[2].sum() == 0  # an absent class: an empty row, not a division by zero
    raw = viz.plot_confusion(cm, ["bg", "a", "b"], normalize=False).axes[0].images[0].get_array()
    assert raw[0, 0] == 90
    with pytest.raises(ValueError, match="class names"):
        viz.plot_confusion(cm, ["bg", "a"])
    plt.close("all")

"""Tests for fcnlib.viz: the VOC palette, colorize/overlay, and that the figures get built."""

import matplotlib

matplotlib.use("Agg")  # no display needed; must come before pyplot is imported

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.patches import Patch
from torch.testing import assert_close

from fcnlib.viz import (
    colorize,
    legend_handles,
    overlay,
    plot_curves,
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


def test_plot_curves_errors():
    with pytest.raises(KeyError, match="accuracy"):
        plot_curves({"step": [0], "loss": [1.0]}, keys=["accuracy"])
    with pytest.raises(ValueError, match="values"):
        plot_curves({"step": [0, 1], "loss": [1.0]})

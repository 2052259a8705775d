"""Tests for fcnlib.metrics: hand-worked examples, edge cases, a numpy reference, torchmetrics
and scipy.ndimage as independent implementations, bad inputs."""

import dataclasses
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from fcnlib.metrics import (
    ConfusionMatrix,
    Scores,
    boundary_band,
    coarse_labels,
    scores,
    scores_table,
)

NAN = float("nan")


def t(rows):
    return torch.tensor(rows, dtype=torch.int64)


# ----------------------------------------------------------------------------- hand-worked


def test_hand_worked_three_classes():
    target = t([[0, 0, 1, 1], [0, 2, 2, 1]])
    pred = t([[0, 1, 1, 1], [0, 2, 0, 2]])
    # (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) / (0,0) (2,2) (2,0) (1,2)
    #            pred 0  1  2     t_i   column sums: 3 3 2
    # gt 0          [ 2, 1, 0 ]    3
    # gt 1          [ 0, 2, 1 ]    3
    # gt 2          [ 1, 0, 1 ]    2
    s = scores(pred, target, n_classes=3)
    assert_close(s.confusion, t([[2, 1, 0], [0, 2, 1], [1, 0, 1]]))
    # pixel acc = (2 + 2 + 1) / 8
    assert s.pixel_acc == pytest.approx(5 / 8)
    # acc_i = n_ii / t_i = 2/3, 2/3, 1/2  ->  mean = 11/18
    assert_close(s.acc, torch.tensor([2 / 3, 2 / 3, 1 / 2], dtype=torch.float64))
    assert s.mean_acc == pytest.approx(11 / 18)
    # IU_i = n_ii / (t_i + col_i - n_ii) = 2/(3+3-2), 2/(3+3-2), 1/(2+2-1) = 1/2, 1/2, 1/3
    assert_close(s.iu, torch.tensor([1 / 2, 1 / 2, 1 / 3], dtype=torch.float64))
    assert s.mean_iu == pytest.approx(4 / 9)
    # fw IU = (3 * 1/2 + 3 * 1/2 + 2 * 1/3) / 8 = (11/3) / 8
    assert s.fw_iu == pytest.approx(11 / 24)


def test_absent_classes():
    # 4 classes: class 2 is predicted but never in the ground truth, class 3 appears nowhere
    target = t([[0, 0, 1, 1]])
    pred = t([[0, 1, 1, 2]])
    # n = [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    # t = [2, 2, 0, 0], column sums = [1, 2, 1, 0], diagonal = [1, 1, 0, 0]
    s = scores(pred, target, n_classes=4)
    # acc = [1/2, 1/2, nan, nan]: mean acc skips the classes absent from gt
    assert_close(s.acc, torch.tensor([0.5, 0.5, NAN, NAN], dtype=torch.float64), equal_nan=True)
    assert s.mean_acc == pytest.approx(0.5)
    # IU = [1/(2+1-1), 1/(2+2-1), 0/(0+1-0), 0/0] = [1/2, 1/3, 0, nan]
    assert_close(s.iu, torch.tensor([0.5, 1 / 3, 0.0, NAN], dtype=torch.float64), equal_nan=True)
    # class 2 counts with IU 0, class 3 is skipped: (1/2 + 1/3 + 0) / 3
    assert s.mean_iu == pytest.approx(5 / 18)
    # fw IU only weighs gt classes: (2 * 1/2 + 2 * 1/3) / 4
    assert s.fw_iu == pytest.approx(5 / 12)
    assert s.pixel_acc == pytest.approx(0.5)


def test_perfect_prediction():
    target = torch.randint(0, 5, (2, 9, 9), generator=torch.Generator().manual_seed(0))
    s = scores(target.clone(), target, n_classes=5)
    assert s.as_dict() == {"pixel_acc": 1.0, "mean_acc": 1.0, "mean_iu": 1.0, "fw_iu": 1.0}


def test_all_wrong_prediction():
    target = torch.zeros(3, 4, dtype=torch.int64)
    s = scores(torch.ones_like(target), target, n_classes=2)
    # n = [[0, 12], [0, 0]]: every one of the 12 class-0 pixels is predicted as class 1
    assert_close(s.confusion, t([[0, 12], [0, 0]]))
    assert s.pixel_acc == 0.0
    assert s.mean_acc == 0.0  # class 1 absent from gt -> skipped
    assert_close(s.iu, torch.zeros(2, dtype=torch.float64))  # class 1 predicted: IU 0, counted
    assert s.mean_iu == 0.0
    assert s.fw_iu == 0.0


# ------------------------------------------------------------------------------ ignore label


def test_ignore_label_excluded():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 4, (2, 16, 16), generator=g)
    target[:, :3] = 255
    pred = torch.randint(0, 4, target.shape, generator=g)
    ref = scores(pred, target, n_classes=4)
    other = pred.clone()
    other[target == 255] = (other[target == 255] + 1) % 4  # only pixels under the void label
    s = scores(other, target, n_classes=4)
    assert_close(s.confusion, ref.confusion)
    assert s.as_dict() == ref.as_dict()
    assert int(s.confusion.sum()) == int((target != 255).sum())


def test_ignore_index_none_counts_everything():
    target = t([[0, 1], [1, 1]])
    cm = ConfusionMatrix(2, ignore_index=None).update(t([[0, 0], [1, 1]]), target)
    assert int(cm.matrix.sum()) == 4
    with pytest.raises(ValueError, match=r"255.*no label is ignored"):
        cm.update(t([[0, 0]]), t([[0, 255]]))


def test_custom_ignore_index():
    cm = ConfusionMatrix(3, ignore_index=-1).update(t([0, 1, 2]), t([0, -1, 2]))
    assert int(cm.matrix.sum()) == 2
    cm = ConfusionMatrix(3, ignore_index=np.int64(-100)).update(t([0, 1]), t([0, -100]))
    assert int(cm.matrix.sum()) == 1 and type(cm.ignore_index) is int


BAD_IGNORE = [(3.5, TypeError), (True, TypeError), ("255", TypeError), (255.0, TypeError),
              (256, ValueError), (1000, ValueError)]  # fmt: skip


@pytest.mark.parametrize(("bad", "error"), BAD_IGNORE)
def test_ignore_index_that_is_not_a_label_value_is_refused(bad, error):
    # 3.5 equals no integer label, so it would ignore nothing; True would ignore class 1
    expected = rf"ignore_index must be .*got {re.escape(repr(bad))}"
    with pytest.raises(error, match=expected):
        ConfusionMatrix(3, ignore_index=bad)
    with pytest.raises(error, match=expected):
        scores(t([0, 1]), t([0, 1]), n_classes=3, ignore_index=bad)
    with pytest.raises(error, match=expected):
        coarse_labels(t([[0, 1], [1, 1]]), 2, n_classes=3, ignore_index=bad)


def test_uint8_labels_do_not_overflow():
    # 21 * 20 + 20 = 440 does not fit in uint8: the arithmetic must happen in int64
    target = torch.tensor([[20, 20, 255, 0]], dtype=torch.uint8)
    s = scores(target.clone(), target, n_classes=21)
    assert int(s.confusion[20, 20]) == 2
    assert s.pixel_acc == 1.0


# ----------------------------------------------------------------------------- the formulas


def test_fw_iu_matches_formula():
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 6, (4, 20, 20), generator=g)
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.7, target, 0)
    s = scores(pred, target, n_classes=6)
    freq = s.confusion.sum(1).double()
    present = freq > 0
    expected = (freq[present] * s.iu[present]).sum() / freq.sum()
    assert s.fw_iu == pytest.approx(expected.item())


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_accumulation_equals_one_update(batch_size):
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 5, (14, 8, 8), generator=g)
    target[target == 4] = 255
    pred = torch.randint(0, 5, target.shape, generator=g)
    cm = ConfusionMatrix(5)
    for p, y in zip(pred.split(batch_size), target.split(batch_size), strict=True):
        cm.update(p, y)
    whole = ConfusionMatrix(5).update(pred, target)
    assert_close(cm.matrix, whole.matrix)
    assert cm.compute().as_dict() == pytest.approx(whole.compute().as_dict(), nan_ok=True)


def numpy_reference(pred, target, n, ignore=255):
    """The classic FCN evaluation code, written independently with numpy."""
    keep = target != ignore
    hist = np.bincount(n * target[keep] + pred[keep], minlength=n**2).reshape(n, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.diag(hist).sum() / hist.sum()
        acc_cls = np.diag(hist) / hist.sum(axis=1)
        iu = np.diag(hist) / (hist.sum(axis=1) + hist.sum(axis=0) - np.diag(hist))
    freq = hist.sum(axis=1) / hist.sum()
    fw = (freq[freq > 0] * iu[freq > 0]).sum()
    return hist, acc, acc_cls, np.nanmean(acc_cls), iu, np.nanmean(iu), fw


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_classes", [2, 5, 21])
def test_matches_numpy_reference(n_classes, seed):
    rng = np.random.default_rng(seed)
    shape = (3, 24, 24)
    # the last class never occurs in the ground truth, so "predicted but absent" is exercised
    target = rng.integers(0, max(n_classes - 1, 1), size=shape)
    target[rng.random(shape) < 0.1] = 255
    pred = np.where(rng.random(shape) < 0.6, target, rng.integers(0, n_classes, size=shape))
    pred[target == 255] = rng.integers(0, n_classes, size=int((target == 255).sum()))

    hist, acc, acc_cls, mean_acc, iu, mean_iu, fw = numpy_reference(pred, target, n_classes)
    s = scores(torch.from_numpy(pred), torch.from_numpy(target), n_classes=n_classes)
    assert_close(s.confusion, torch.from_numpy(hist).long())
    assert_close(s.acc, torch.from_numpy(acc_cls), equal_nan=True)
    assert_close(s.iu, torch.from_numpy(iu), equal_nan=True)
    assert s.pixel_acc == pytest.approx(acc)
    assert s.mean_acc == pytest.approx(mean_acc)
    assert s.mean_iu == pytest.approx(mean_iu)
    assert s.fw_iu == pytest.approx(fw)


# -------------------------------------------------- torchmetrics, an independent implementation


def _random_labels(seed, n_classes, *, absent=(), predicted_only=()):
    """(pred, target) int64 (3, 24, 24) with void in the target; ``absent`` classes occur in
    neither, ``predicted_only`` classes only in the prediction; every other class in both."""
    g = torch.Generator().manual_seed(seed)
    shape = (3, 24, 24)
    in_target = torch.tensor([c for c in range(n_classes) if c not in (*absent, *predicted_only)])
    in_pred = torch.tensor([c for c in range(n_classes) if c not in absent])
    target = in_target[torch.randint(0, len(in_target), shape, generator=g)]
    target[torch.rand(shape, generator=g) < 0.1] = 255
    wrong = in_pred[torch.randint(0, len(in_pred), shape, generator=g)]
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, wrong)
    pred[pred == 255] = in_pred[0]
    for c in predicted_only:  # at least one labelled pixel each, whatever the draw gave
        pred[0, 0, c], target[0, 0, c] = c, in_target[0]
    return pred, target


def _torchmetrics_scores(pred, target, n_classes):
    tm = pytest.importorskip("torchmetrics.classification")
    kw = {"num_classes": n_classes, "ignore_index": 255}
    return {
        "confusion": tm.MulticlassConfusionMatrix(**kw)(pred, target),
        "pixel_acc": tm.MulticlassAccuracy(average="micro", **kw)(pred, target).item(),
        "mean_acc": tm.MulticlassAccuracy(average="macro", **kw)(pred, target).item(),
        "acc": tm.MulticlassAccuracy(average="none", **kw)(pred, target).double(),
        "mean_iu": tm.MulticlassJaccardIndex(average="macro", **kw)(pred, target).item(),
        "fw_iu": tm.MulticlassJaccardIndex(average="weighted", **kw)(pred, target).item(),
        "iu": tm.MulticlassJaccardIndex(average="none", **kw)(pred, target).double(),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("n_classes", "absent"), [(2, ()), (5, ()), (21, ()), (5, (1, 4)), (21, (0, 7, 20))]
)
def test_matches_torchmetrics_where_every_class_is_defined(n_classes, absent, seed):
    """Every class in both ground truth and prediction, or in neither: all agree."""
    pred, target = _random_labels(seed, n_classes, absent=absent)
    ours = scores(pred, target, n_classes=n_classes)
    theirs = _torchmetrics_scores(pred, target, n_classes)
    assert_close(ours.confusion, theirs["confusion"])
    for name in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert getattr(ours, name) == pytest.approx(theirs[name], rel=1e-6), name
    # per class, torchmetrics writes 0 where the paper's ratio is 0/0 (nan here)
    defined = ~ours.iu.isnan()
    assert defined.sum() == n_classes - len(absent)
    assert_close(ours.iu[defined], theirs["iu"][defined], rtol=1e-6, atol=0)
    assert_close(ours.acc[defined], theirs["acc"][defined], rtol=1e-6, atol=0)
    assert (theirs["iu"][~defined] == 0).all() and (theirs["acc"][~defined] == 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("n_classes", "predicted_only"), [(5, (4,)), (21, (3, 11, 20))])
def test_torchmetrics_macro_accuracy_counts_predicted_but_absent_classes_as_zero(
    n_classes, predicted_only, seed
):
    """The one place they differ (see fcnlib.metrics): a class predicted but absent from the
    ground truth. Its accuracy n_ii / t_i is 0/0: the paper's mean skips it, torchmetrics'
    macro average counts it as 0. Its IU is 0 / (predicted pixels) = 0 in both."""
    pred, target = _random_labels(seed, n_classes, predicted_only=predicted_only)
    ours = scores(pred, target, n_classes=n_classes)
    theirs = _torchmetrics_scores(pred, target, n_classes)
    assert_close(ours.confusion, theirs["confusion"])
    assert ours.acc[list(predicted_only)].isnan().all()
    assert (ours.iu[list(predicted_only)] == 0).all()
    for name in ("pixel_acc", "mean_iu", "fw_iu"):
        assert getattr(ours, name) == pytest.approx(theirs[name], rel=1e-6), name
    # the paper: mean over the n - k classes in the ground truth; torchmetrics: over all n
    k = len(predicted_only)
    assert theirs["mean_acc"] == pytest.approx(ours.mean_acc * (n_classes - k) / n_classes)
    assert theirs["mean_acc"] < ours.mean_acc


# ------------------------------------------------------------------- merge, reset, devices


def test_merge_and_iadd():
    target = t([[0, 1, 2, 255], [2, 2, 1, 0]])
    pred = t([[0, 2, 2, 0], [2, 1, 1, 0]])
    whole = ConfusionMatrix(3).update(pred, target)
    a = ConfusionMatrix(3).update(pred[:1], target[:1])
    b = ConfusionMatrix(3).update(pred[1:], target[1:])
    assert a.merge(b) is a
    assert_close(a.matrix, whole.matrix)
    c = ConfusionMatrix(3)
    c += whole
    assert_close(c.matrix, whole.matrix)
    with pytest.raises(ValueError, match="3-class"):
        a.merge(ConfusionMatrix(4))
    with pytest.raises(TypeError, match="ConfusionMatrix"):
        a.merge(whole.matrix)


def test_all_reduce_is_noop_without_distributed():
    cm = ConfusionMatrix(2).update(t([0, 1]), t([0, 0]))
    before = cm.matrix.clone()
    assert cm.all_reduce_() is cm
    assert_close(cm.matrix, before)


def test_reset_and_empty():
    cm = ConfusionMatrix(3)
    empty = cm.compute()
    assert all(math.isnan(v) for v in empty.as_dict().values())  # nan only when nothing counted
    cm.update(t([0, 1]), t([0, 1]))
    assert cm.reset() is cm
    assert int(cm.matrix.sum()) == 0
    assert cm.matrix.shape == (3, 3) and cm.matrix.dtype == torch.int64
    assert math.isnan(cm.compute().pixel_acc)


def test_scores_object():
    s = scores(t([[0, 1, 1, 2]]), t([[0, 1, 2, 2]]), n_classes=3)
    assert isinstance(s, Scores)
    assert set(s.as_dict()) == {"pixel_acc", "mean_acc", "mean_iu", "fw_iu"}
    assert all(isinstance(v, float) for v in s.as_dict().values())
    assert re.fullmatch(
        r"pixel acc 75\.0 \| mean acc \d+\.\d \| mean IU \d+\.\d \| f\.w\. IU .*", str(s)
    )
    table = s.to_table(["background", "cat", "dog"])
    assert "background" in table and "dog" in table and table.count("\n") == 4
    with pytest.raises(ValueError, match="class names"):
        s.to_table(["only one"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.mean_iu = 1.0
    assert s.confusion.device.type == "cpu" and s.iu.dtype == torch.float64


def test_matrix_on_cpu():
    cm = ConfusionMatrix(2).update(t([0, 1]), t([0, 1]))
    assert cm.matrix.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_matrix_follows_cuda_input():
    g = torch.Generator().manual_seed(4)
    target = torch.randint(0, 4, (2, 16, 16), generator=g)
    pred = torch.randint(0, 4, (2, 16, 16), generator=g)
    cm = ConfusionMatrix(4).update(pred.cuda(), target.cuda())
    assert cm.matrix.device.type == "cuda"
    s = cm.compute()
    assert s.confusion.device.type == "cpu"
    assert_close(s.confusion, scores(pred, target, n_classes=4).confusion)
    cm.update(pred, target)  # a later CPU batch still adds up
    assert int(cm.matrix.sum()) == 2 * pred.numel()


# ------------------------------------------------------------------------------ bad inputs


def test_shape_mismatch():
    with pytest.raises(ValueError, match=re.escape("pred (2, 4, 4) and target (2, 5, 5)")):
        ConfusionMatrix(3).update(
            torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 5, 5, dtype=torch.long)
        )


def test_logits_shaped_pred_hints_argmax():
    pred = torch.zeros(2, 3, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"argmax"):
        ConfusionMatrix(3).update(pred, torch.zeros(2, 4, 4, dtype=torch.long))


def test_float_input():
    logits = torch.randn(2, 3, 4, 4)
    with pytest.raises(TypeError, match=r"float32.*argmax"):
        ConfusionMatrix(3).update(logits, torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="target"):
        ConfusionMatrix(3).update(torch.zeros(4, dtype=torch.long), torch.zeros(4))


def test_unknown_class_in_target():
    with pytest.raises(ValueError, match=r"target contains class ids \[7\].*\[0, 4\].*255"):
        ConfusionMatrix(5).update(t([0, 1, 2, 3]), t([0, 7, 2, 255]))


def test_many_unknown_classes_are_truncated():
    with pytest.raises(ValueError, match=r"\[10, 11, .*19, \.\.\.\]"):
        ConfusionMatrix(5).update(torch.zeros(30, dtype=torch.long), torch.arange(10, 40))


def test_pred_out_of_range():
    with pytest.raises(ValueError, match=r"pred contains class ids \[5\]"):
        ConfusionMatrix(5).update(t([0, 5]), t([0, 1]))


def test_negative_values():
    with pytest.raises(ValueError, match=r"target contains class ids \[-1\]"):
        ConfusionMatrix(3).update(t([0, 1]), t([0, -1]))
    with pytest.raises(ValueError, match=r"pred contains class ids \[-2\]"):
        ConfusionMatrix(3).update(t([-2, 1]), t([0, 1]))


@pytest.mark.parametrize("bad", [0, -3])
def test_n_classes_must_be_positive(bad):
    with pytest.raises(ValueError, match="n_classes must be >= 1"):
        ConfusionMatrix(bad)


@pytest.mark.parametrize("bad", [2.0, "21", True])
def test_n_classes_must_be_int(bad):
    with pytest.raises(TypeError, match="n_classes must be an int"):
        ConfusionMatrix(bad)


# ------------------------------------------------------------------------- boundary band


def test_boundary_band_of_a_square_is_a_ring_of_the_given_width():
    t = torch.zeros(20, 20, dtype=torch.long)
    t[5:15, 5:15] = 3
    for width in (1, 2, 3):
        band = boundary_band(t, width)
        # distance (Chebyshev) to the nearest pixel of the other label, inside and out
        inside = torch.zeros(20, 20, dtype=torch.bool)
        inside[5:15, 5:15] = True
        ys, xs = torch.meshgrid(torch.arange(20), torch.arange(20), indexing="ij")
        d_out = torch.stack([5 - ys, ys - 14, 5 - xs, xs - 14]).amax(0)
        d_in = torch.minimum(torch.minimum(ys - 4, 15 - ys), torch.minimum(xs - 4, 15 - xs))
        expected = torch.where(inside, d_in, d_out) <= width
        assert torch.equal(band, expected)


def test_boundary_band_edge_cases():
    flat = torch.full((2, 7, 9), 4, dtype=torch.long)
    assert not boundary_band(flat, 3).any()  # no boundary, and the image border is not one
    t = torch.zeros(2, 7, 9, dtype=torch.long)
    t[1, 3, 4] = 255  # a void pixel is a boundary of its own
    band = boundary_band(t, 1)
    assert band.shape == t.shape and not band[0].any()
    assert band[1].sum() == 9 and band[1, 2:5, 3:6].all()
    assert boundary_band(t, 50)[1].all()
    with pytest.raises(ValueError, match="width"):
        boundary_band(t, 0)
    with pytest.raises(ValueError, match="integer labels"):
        boundary_band(t.float(), 1)


def _band_by_dilation(label, width):
    """scipy.ndimage's reading of the definition: a pixel is in the band if a pixel of another
    value (void included) lies within Chebyshev distance ``width`` inside the image, i.e. the
    square dilation of "not my value" covers it; outside the image counts as nothing."""
    from scipy import ndimage

    square = np.ones((2 * width + 1, 2 * width + 1), dtype=bool)
    band = np.zeros(label.shape, dtype=bool)
    for value in np.unique(label):
        mine = label == value
        band |= mine & ndimage.binary_dilation(~mine, structure=square, border_value=0)
    return band


def _band_by_distance(label, width):
    """The same from the chessboard distance transform: distance to the nearest pixel of
    another value (the image border is not such a pixel) at most ``width``."""
    from scipy import ndimage

    band = np.zeros(label.shape, dtype=bool)
    for value in np.unique(label):
        mine = label == value
        if mine.all():
            continue  # nothing else in the image: no boundary
        distance = ndimage.distance_transform_cdt(mine, metric="chessboard")
        band |= mine & (distance <= width)
    return band


def _random_label_maps(seed, shape, n_classes, void):
    """Blocky random labels (regions, not noise) with scattered void pixels, (N, H, W)."""
    g = torch.Generator().manual_seed(seed)
    n, h, w = shape
    block = 6
    coarse = torch.randint(0, n_classes, (n, 1, -(-h // block), -(-w // block)), generator=g)
    label = F.interpolate(coarse.float(), scale_factor=block, mode="nearest")[:, 0, :h, :w]
    label = label.long()
    label[torch.rand(shape, generator=g) < void] = 255
    return label


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 17, 23), (1, 5, 40), (3, 1, 9), (1, 32, 32)])
@pytest.mark.parametrize("width", [1, 2, 5, 40])
def test_boundary_band_matches_scipy_morphology(seed, shape, width):
    label = _random_label_maps(seed, shape, n_classes=3, void=0.03)
    band = boundary_band(label, width)
    for i, image in enumerate(label.numpy()):
        expected = _band_by_dilation(image, width)
        assert (band[i].numpy() == expected).all()
        assert (_band_by_distance(image, width) == expected).all()
    assert torch.equal(boundary_band(label[0], width), band[0])  # (H, W) as one of (N, H, W)


# ----------------------------------------------------------------------------- Appendix A


def test_coarse_labels_is_the_block_majority_with_void_not_voting():
    from fcnlib.metrics import coarse_labels

    t = torch.tensor(
        [[0, 0, 2, 255, 1],
         [1, 255, 2, 2, 1],
         [255, 255, 0, 1, 1]]
    )  # fmt: skip
    out = coarse_labels(t, 2, n_classes=3)
    expected = torch.tensor(
        [[0, 0, 2, 2, 1],
         [0, 0, 2, 2, 1],
         [255, 255, 0, 0, 1]]
    )  # fmt: skip
    # block (0,0): 0,0,1 -> 0; (0,1): 2,2,2 -> 2; (0,2) partial: 1,1 -> 1;
    # (1,0): all void -> void; (1,1): 0,1 tie -> 0 (lower id); (1,2): 1 -> 1
    assert torch.equal(out, expected)
    assert torch.equal(coarse_labels(t, 1, n_classes=3), t)
    assert coarse_labels(t.unsqueeze(0), 2, n_classes=3).shape == (1, 3, 5)


def test_coarse_labels_maximise_pixel_accuracy_among_block_labellings():
    from fcnlib.metrics import coarse_labels

    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 3, (1, 4, 4), generator=g)
    t[0, 0, 1] = 255
    best = scores(coarse_labels(t, 2, n_classes=3), t, 3).pixel_acc
    # brute force: every assignment of one class to each of the four 2x2 blocks
    accs = []
    for code in range(3**4):
        labels = [(code // 3**k) % 3 for k in range(4)]
        block = torch.tensor(labels).view(1, 2, 2)
        pred = block.repeat_interleave(2, -2).repeat_interleave(2, -1)
        accs.append(scores(pred, t, 3).pixel_acc)
    assert best == pytest.approx(max(accs))


def test_coarse_labels_bound_falls_with_the_factor_on_scenes():
    from fcnlib.data import ShapesDataset
    from fcnlib.metrics import coarse_labels

    _, y = ShapesDataset("val", size=64, length=8).materialize()
    ious = [scores(coarse_labels(y, f, n_classes=7), y, 7).mean_iu for f in (1, 4, 16, 64)]
    assert ious[0] == 1.0 and ious == sorted(ious, reverse=True) and ious[-1] < 0.6


def test_coarse_labels_rejects_bad_input():
    from fcnlib.metrics import coarse_labels

    with pytest.raises(ValueError, match="factor"):
        coarse_labels(torch.zeros(4, 4, dtype=torch.long), 0, n_classes=2)
    with pytest.raises(ValueError, match="n_classes"):
        coarse_labels(torch.full((4, 4), 5), 2, n_classes=2)
    with pytest.raises(ValueError, match="integer"):
        coarse_labels(torch.zeros(4, 4), 2, n_classes=2)


def test_scores_table_prints_each_runs_four_metrics_in_aligned_columns():
    target = torch.tensor([[0, 0, 1, 1, 2, 2]])
    a = scores(torch.tensor([[0, 0, 1, 1, 2, 2]]), target, n_classes=3)
    b = scores(torch.tensor([[0, 1, 1, 1, 0, 2]]), target, n_classes=3)
    text = scores_table({"perfect": a, "two wrong": b}, columns={"s": {"perfect": "1.5"}})
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1, "columns line up"
    assert lines[0].split(" | ") == [
        "      run",
        "pixel acc",
        "mean acc",
        "mean IU",
        "f.w. IU",
        "  s",
    ]
    for line, s, extra in zip(lines[1:], (a, b), ("1.5", "-"), strict=True):
        cells = [c.strip() for c in line.split(" | ")]
        assert [float(c) for c in cells[1:5]] == [
            round(100 * v, 1) for v in (s.pixel_acc, s.mean_acc, s.mean_iu, s.fw_iu)
        ]
        assert cells[5] == extra
    assert float(lines[2].split(" | ")[1]) == pytest.approx(100 * 4 / 6, abs=0.05)


def test_scores_table_refuses_rows_it_cannot_print():
    s = scores(torch.tensor([0, 1]), torch.tensor([0, 1]), n_classes=2)
    with pytest.raises(ValueError, match="at least one row"):
        scores_table({})
    with pytest.raises(ValueError, match="not rows"):
        scores_table({"a": s}, columns={"time": {"b": 1}})
    with pytest.raises(TypeError, match="pass a Scores"):
        scores_table({"a": s.as_dict()})

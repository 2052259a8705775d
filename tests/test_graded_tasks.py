"""Each chapter's autograded task tells right from wrong: the master's solution passes its
check, and each wrong solution below fails it, as nbgrader's autograde would see it (the check
cell run after the answer, hidden tests included). A wrong solution marked "hidden" passes the
visible part of the check and is caught only by the hidden tests; one marked "visible" is caught
in view of the student.

The checks of Chapters 1 to 4 and 6 need nothing from the chapter but its imports; Chapter 5's
uses a few of its names, made here as the chapter makes them. Chapter 7's task trains a net and
is graded by nbgrader in tests/test_assignments.py."""

import copy
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = "### BEGIN HIDDEN TESTS"

# label -> {what is wrong: (caught by "visible" or "hidden", the wrong answer)}
WRONG = {
    "ch1-ex-fwiu": {
        "no mask: a class absent from truth and prediction makes it nan": (
            "hidden",
            """\
def fw_iu(n):
    n = n.double()
    t, hits = n.sum(1), n.diag()
    return float((t * hits / (t + n.sum(0) - hits)).sum() / t.sum())
""",
        ),
        "weighted by the predicted pixels": (
            "visible",
            """\
def fw_iu(n):
    n = n.double()
    p, hits = n.sum(0), n.diag()
    iu = hits / (n.sum(1) + p - hits)
    return float((p[p > 0] * iu[p > 0]).sum() / p.sum())
""",
        ),
        "the union counts the hits twice": (
            "visible",
            """\
def fw_iu(n):
    n = n.double()
    t, hits = n.sum(1), n.diag()
    iu = hits / (t + n.sum(0))
    return float((t[t > 0] * iu[t > 0]).sum() / t.sum())
""",
        ),
    },
    "ch2-ex-alexnet": {
        "channels last: the weights read in the wrong order": (
            "visible",
            """\
def fc_as_conv(fc, channels, size):
    conv = nn.Conv2d(channels, fc.out_features, size).to(fc.weight.dtype)
    w = fc.weight.view(fc.out_features, size, size, channels).permute(0, 3, 1, 2)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(fc.bias)
    return conv
""",
        ),
        "the bias is not copied": (
            "visible",
            """\
def fc_as_conv(fc, channels, size):
    conv = nn.Conv2d(channels, fc.out_features, size).to(fc.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(fc.weight.view(fc.out_features, channels, size, size))
    return conv
""",
        ),
        "stride = size: one output per tile, not per position": (
            "hidden",
            """\
def fc_as_conv(fc, channels, size):
    conv = nn.Conv2d(channels, fc.out_features, size, stride=size)
    conv = conv.to(fc.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(fc.weight.view(fc.out_features, channels, size, size))
        conv.bias.copy_(fc.bias)
    return conv
""",
        ),
    },
    "ch3-ex-geometry": {
        "dilation ignored": (
            "hidden",
            """\
def geometry(layers):
    field, jump, offset = 1, 1, 0.0
    for k, s, p, d in layers:
        field += (k - 1) * jump
        offset += ((k - 1) / 2 - p) * jump
        jump *= s
    return field, jump, offset
""",
        ),
        "padding ignored in the offset": (
            "visible",
            """\
def geometry(layers):
    field, jump, offset = 1, 1, 0.0
    for k, s, p, d in layers:
        span = d * (k - 1) + 1
        field += (span - 1) * jump
        offset += (span - 1) / 2 * jump
        jump *= s
    return field, jump, offset
""",
        ),
        "the layer's own stride instead of the jump so far": (
            "visible",
            """\
def geometry(layers):
    field, jump, offset = 1, 1, 0.0
    for k, s, p, d in layers:
        span = d * (k - 1) + 1
        field += (span - 1) * s
        offset += ((span - 1) / 2 - p) * jump
        jump *= s
    return field, jump, offset
""",
        ),
    },
    "ch4-ex-kernel": {
        "a 2f kernel for every factor (odd ones included)": (
            "hidden",
            """\
def bilinear(factor):
    size = 2 * factor
    centre = (size - 1) / 2
    tent = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    return tent[:, None] * tent[None, :]
""",
        ),
        "the tent's half-width is half the kernel, not the factor": (
            "hidden",
            """\
def bilinear(factor):
    size = 2 * factor - factor % 2
    centre = (size - 1) / 2
    tent = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / (size / 2)
    return tent[:, None] * tent[None, :]
""",
        ),
        "centred half a pixel off": (
            "visible",
            """\
def bilinear(factor):
    size = 2 * factor - factor % 2
    centre = size / 2
    tent = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    return (tent[:, None] * tent[None, :]).clamp(min=0)
""",
        ),
    },
    "ch6-ex-fold": {
        "the channels are not reversed (BGR read as RGB)": (
            "visible",
            """\
def fold_caffe(conv, mean):
    folded = copy.deepcopy(conv)
    m = torch.as_tensor(mean, dtype=conv.weight.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        folded.weight.copy_(255 * conv.weight)
        folded.bias.copy_(conv.bias - (conv.weight * m).sum((1, 2, 3)))
    return folded
""",
        ),
        "the mean is added to the bias, not subtracted": (
            "visible",
            """\
def fold_caffe(conv, mean):
    folded = copy.deepcopy(conv)
    m = torch.as_tensor(mean, dtype=conv.weight.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        folded.weight.copy_(255 * conv.weight.flip(1))
        folded.bias.copy_(conv.bias + (conv.weight * m).sum((1, 2, 3)))
    return folded
""",
        ),
        "right numbers, but conv itself is changed in place": (
            "visible",
            """\
def fold_caffe(conv, mean):
    m = torch.as_tensor(mean, dtype=conv.weight.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        bias = conv.bias - (conv.weight * m).sum((1, 2, 3))
        conv.weight.copy_(255 * conv.weight.flip(1))
        conv.bias.copy_(bias)
    return conv
""",
        ),
        "the mean's channels in RGB order": (
            "visible",
            """\
def fold_caffe(conv, mean):
    folded = copy.deepcopy(conv)
    m = torch.as_tensor(mean, dtype=conv.weight.dtype).flip(0).view(1, 3, 1, 1)
    with torch.no_grad():
        folded.weight.copy_(255 * conv.weight.flip(1))
        folded.bias.copy_(conv.bias - (conv.weight * m).sum((1, 2, 3)))
    return folded
""",
        ),
        "a new 3 x 3 convolution with padding 1, whatever conv was": (
            "hidden",
            """\
def fold_caffe(conv, mean):
    folded = nn.Conv2d(3, conv.out_channels, 3, padding=1).to(conv.weight.dtype)
    m = torch.as_tensor(mean, dtype=conv.weight.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        folded.weight.copy_(255 * conv.weight.flip(1))
        folded.bias.copy_(conv.bias - (conv.weight * m).sum((1, 2, 3)))
    return folded
""",
        ),
    },
    "ch5-ex-fuse": {
        "the pool4 scores are missing": (
            "visible",
            """\
def fuse_16s(score_fr, pool4, score_pool4, upscore2):
    return upscore2(score_fr)[..., : pool4.shape[-2], : pool4.shape[-1]]
""",
        ),
        "the skip's scores replace the upsampled ones": (
            "visible",
            """\
def fuse_16s(score_fr, pool4, score_pool4, upscore2):
    return score_pool4(pool4)
""",
        ),
        "right on a 64 x 64 scene, cropped to the upsampled map's size": (
            "hidden",
            """\
def fuse_16s(score_fr, pool4, score_pool4, upscore2):
    up, skip = upscore2(score_fr), score_pool4(pool4)
    return up + skip[..., : up.shape[-2], : up.shape[-1]]
""",
        ),
    },
}


def _cells(label: str) -> tuple[str, str]:
    """The master's answer cell and check cell of the task ``label``."""
    (path,) = (ROOT / "notebooks").glob(f"0{label[2]}_*.ipynb")
    nb = nbformat.read(path, as_version=4)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    return by_id[f"{label}-code"], by_id[f"{label}-test"]


def _namespace(label: str) -> dict:
    """What the check uses from the chapter: its imports, seed and device (and for Chapter 5,
    the classes, fcn16s and two validation scenes)."""
    ns = {"torch": torch, "nn": nn, "F": F, "copy": copy, "seed": 0, "device": torch.device("cpu")}
    if label.startswith("ch5"):
        from fcnlib.data import CLASSES, ShapesDataset
        from fcnlib.models import fcn16s

        images, _ = ShapesDataset("val", size=64, length=2, seed=0).materialize()
        ns.update(K=len(CLASSES), fcn16s=fcn16s, ShapesDataset=ShapesDataset, val_images=images)
    return ns


def _run(answer: str, check: str, label: str) -> None:
    ns = _namespace(label)
    exec(answer, ns)
    exec(check, ns)


def test_every_autograded_task_but_chapter_7s_has_wrong_answers_here():
    labels = set()
    for path in sorted((ROOT / "notebooks").glob("0[0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            if cell.cell_type == "code" and grade_id.endswith("-test"):
                labels.add(grade_id.removesuffix("-test"))
    labels = {label for label in labels if not label.endswith("-quiz")}  # tested below
    assert labels - {"ch7-ex-depth"} == set(WRONG)
    for label, wrong in WRONG.items():
        assert len(wrong) >= 2, label
        assert any(where == "hidden" for where, _ in wrong.values()), f"{label}: a partly wrong one"


@pytest.mark.parametrize("label", sorted(WRONG))
def test_the_reference_solution_passes_its_check(label):
    answer, check = _cells(label)
    assert "### BEGIN SOLUTION" in answer and HIDDEN in check
    _run(answer, check, label)


@pytest.mark.parametrize(
    ("label", "why"), [(label, why) for label in sorted(WRONG) for why in WRONG[label]]
)
def test_a_wrong_solution_fails_its_check(label, why):
    where, answer = WRONG[label][why]
    _, check = _cells(label)
    visible = check.split(HIDDEN)[0]
    if where == "hidden":
        _run(answer, visible, label)  # passes what the student sees...
    else:
        with pytest.raises(Exception):  # noqa: B017 -- any error scores 0 with nbgrader
            _run(answer, visible, label)
    with pytest.raises(Exception):  # noqa: B017
        _run(answer, check, label)  # ...and fails the whole check


# The quick checks at the end of every chapter: the master's answers get every point, and each
# answer changed alone costs exactly its point.
QUIZZES = [f"ch{p.stem[1]}-quiz" for p in sorted((ROOT / "notebooks").glob("0[0-9]_*.ipynb"))]


def _answers(label: str) -> dict:
    answers, _ = _cells(label)
    ns: dict = {}
    exec(answers, ns)  # the solution's assignment line
    return {q: ns[q] for q in sorted(ns) if q.startswith("q")}


def _mark(label: str, answers: dict) -> int:
    _, check = _cells(label)
    head, _, last = check.rpartition("quiz(")  # the check ends with the quiz(...) call
    ns = dict(answers)
    exec(head, ns)
    return eval("quiz(" + last, ns)


@pytest.mark.parametrize("label", QUIZZES)
def test_quick_checks_give_a_point_per_right_answer(label, capsys):
    answers = _answers(label)
    assert 3 <= len(answers) <= 5
    assert _mark(label, answers) == len(answers)
    for question, answer in answers.items():
        wrong = answer + 1 if isinstance(answer, int) else "z"
        assert _mark(label, {**answers, question: wrong}) == len(answers) - 1, question
    assert _mark(label, dict.fromkeys(answers)) == 0
    printed = capsys.readouterr().out
    assert "not right yet" in printed and "no answer yet" in printed

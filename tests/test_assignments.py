"""Student versions (book/assignments.py, nbgrader's preprocessors): every chapter has one,
without its solutions or hidden tests, and its stubs fail loudly."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow  # nbgrader/notebook runs: `make unit` leaves them out

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("assignments", ROOT / "book" / "assignments.py")
assignments = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(assignments)

CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SECRETS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "{solution}")


def _master(path):
    return nbformat.read(path, as_version=4)


def _is_solution(cell):
    return cell.metadata.get("nbgrader", {}).get("solution", False)


@pytest.fixture(scope="module", params=CHAPTERS, ids=lambda p: p.stem)
def pair(request):
    master = _master(request.param)
    return master, assignments.student_version(master)


def test_every_exercise_has_a_graded_answer_cell(pair):
    master, _ = pair
    text = "\n".join(c.source for c in master.cells if c.cell_type == "markdown")
    labels = re.findall(r"\{exercise\}[^\n]*\n:label: (\S+)", text)
    answers = {c.metadata["nbgrader"]["grade_id"] for c in master.cells if _is_solution(c)}
    assert len(labels) >= 3
    assert {f"{label}-answer" for label in labels} <= answers


def test_student_version_keeps_no_solution(pair):
    master, student = pair
    assert len(student.cells) == len(master.cells)
    for m, s in zip(master.cells, student.cells, strict=True):
        for secret in SECRETS:
            assert secret not in s.source, f"{secret!r} left in cell {s.get('id')}"
        if _is_solution(m):
            stub = "raise NotImplementedError()" if m.cell_type == "code" else "YOUR ANSWER HERE"
            assert stub in s.source and s.source != m.source
        elif "### BEGIN HIDDEN TESTS" in m.source:
            visible = m.source.split("### BEGIN HIDDEN TESTS")[0].strip()
            assert s.source.strip() == visible
        else:
            assert s.source == m.source  # everything else is handed out as written
        if s.cell_type == "code":
            assert not s.outputs and s.execution_count is None
        if s.metadata.get("nbgrader", {}).get("grade"):
            assert s.metadata["nbgrader"].get("checksum")  # for nbgrader's autograder
            assert s.metadata["nbgrader"]["locked"] or _is_solution(s)


def test_student_version_runs_like_the_master_up_to_its_first_stub(pair):
    # Every code cell before the first solution cell is handed out byte for byte, and nbval runs
    # the master: the student version executes the same code up to its first stub.
    master, student = pair
    for m, s in zip(master.cells, student.cells, strict=True):
        if m.cell_type != "code":
            continue
        if _is_solution(m):
            break
        assert s.source == m.source


def test_training_exercise_stub_raises_where_students_start():
    master = _master(ROOT / "notebooks" / "07_beyond.ipynb")
    student = assignments.student_version(master)
    stub = next(c for c in student.cells if c.cell_type == "code" and _is_solution(c))
    with pytest.raises(NotImplementedError):
        exec(stub.source, {})
    test = next(c for c in student.cells if c.get("id") == "ch7-ex-depth-test")
    assert "mean IU" in test.source and "pixel_acc" not in test.source  # hidden part removed


def test_a_code_stub_raises_not_implemented():
    master = _master(ROOT / "notebooks" / "05_skip_fusion.ipynb")
    student = assignments.student_version(master)
    stubs = [c for c in student.cells if c.cell_type == "code" and _is_solution(c)]
    assert stubs, "chapter 5 has an autograded exercise"
    namespace: dict = {}
    exec(stubs[0].source, namespace)  # defines fuse_16s with a stub body
    with pytest.raises(NotImplementedError):
        namespace["fuse_16s"](None, None, None, None)


def test_command_line_writes_chosen_chapters(tmp_path, capsys):
    assignments.main(["5", "01_semantic_segmentation", "--out", str(tmp_path)])
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["01_semantic_segmentation.ipynb", "05_skip_fusion.ipynb"]
    student = json.loads((tmp_path / "05_skip_fusion.ipynb").read_text())
    assert "### BEGIN SOLUTION" not in json.dumps(student)
    with pytest.raises(SystemExit, match="no chapter '99'"):
        assignments.main(["99", "--out", str(tmp_path)])


# Grading with nbgrader itself (book/grading.py, book/nbgrader_config.py): the fast path skips
# the cells tagged skip-when-grading, and must still give the master's answers full marks and a
# wrong answer none.
_spec = importlib.util.spec_from_file_location("grading", ROOT / "book" / "grading.py")
grading = importlib.util.module_from_spec(_spec)
sys.modules["grading"] = grading  # its dataclass looks itself up there
_spec.loader.exec_module(grading)


def _autograded(nb):
    return [
        c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
    ]


AUTOGRADED = [p for p in CHAPTERS if _autograded(_master(p))]


def test_every_chapter_has_an_autograded_task():
    assert AUTOGRADED == CHAPTERS


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_grading_skips_no_cell_nbgrader_grades(path):
    nb = _master(path)
    skipped = [c for c in nb.cells if grading.SKIP_TAG in c.metadata.get("tags", [])]
    assert all(c.cell_type == "code" and "nbgrader" not in c.metadata for c in skipped)
    assert all("parameters" not in c.metadata.get("tags", []) for c in skipped)
    if _autograded(nb):
        assert path in AUTOGRADED
        assert len(skipped) >= 8, "a chapter with autograded cells skips its trainings"
    else:
        assert not skipped, "nothing to skip where nothing is autograded"


def test_the_course_config_turns_the_fast_path_on():
    text = grading.CONFIG.read_text()
    assert f'c.Execute.skip_cells_with_tag = "{grading.SKIP_TAG}"' in text
    assert "c.Execute.timeout = " in text


@pytest.mark.parametrize("path", AUTOGRADED, ids=lambda p: p.stem)
def test_nbgrader_autograde_gives_the_master_full_marks_on_the_fast_path(path, tmp_path):
    graded = grading.grade(path, tmp_path / "course")
    assert graded.full_marks, graded
    assert graded.max_points == sum(c.metadata.nbgrader.points for c in _autograded(_master(path)))
    skipped = sum(grading.SKIP_TAG in c.metadata.get("tags", []) for c in _master(path).cells)
    assert graded.cells_run == graded.cells - skipped


def test_nbgrader_autograde_fails_a_fusion_that_forgets_the_skip(tmp_path):
    # ... even where the submission tags its test cell to be skipped: the course config drops
    # skip tags from graded cells (nbgrader restores their source, not their tags).
    path = ROOT / "notebooks" / "05_skip_fusion.ipynb"
    wrong = _master(path)
    answer = next(c for c in wrong.cells if c.cell_type == "code" and _is_solution(c))
    answer.source = (
        "def fuse_16s(score_fr, pool4, score_pool4, upscore2):\n"
        "    return upscore2(score_fr)  # the pool4 scores are missing\n"
    )
    for cell in _autograded(wrong):
        cell.metadata["tags"] = [grading.SKIP_TAG, "skip-execution"]
    graded = grading.grade(path, tmp_path / "course", submission=wrong)
    # the fusion's 2 points are lost; the quick checks' (answered as in the master) are not
    assert graded.points == graded.max_points - 2


# Chapter 7's task trains a net: partly wrong answers that train fine but not what was asked,
# each measured over seeds 0 and 1 on the fast path (the reference: 38.4 to 42.9 mean IU over
# seeds 0-4, its loss falling to 27-33% of the first epoch's; the floors are 35 and 45%).
CH7_WRONG = {
    # mean IU 16.6 at both seeds, the loss at 69-71%
    "the blue channel, not the depth": ("x[:, 3:].expand", "x[:, 2:3].expand"),
    # mean IU 29.0-30.3, the loss at 47%; the hidden part also counts the epochs
    "half the epochs": (
        "config=config,",
        'config=recipe("fast", epochs=max(1, epochs // 2), seed=seed),',
    ),
}


@pytest.mark.parametrize("why", sorted(CH7_WRONG))
def test_nbgrader_autograde_fails_a_depth_net_trained_partly_wrong(why, tmp_path):
    path = ROOT / "notebooks" / "07_beyond.ipynb"
    wrong = _master(path)
    answer = next(
        c
        for c in wrong.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "ch7-ex-depth-code"
    )
    old, new = CH7_WRONG[why]
    assert old in answer.source
    answer.source = answer.source.replace(old, new)
    graded = grading.grade(path, tmp_path / "course", submission=wrong)
    assert graded.points == graded.max_points - 2  # the task's 2 points; the quick checks kept
    # lost to a floor, not to a crash: the answer ran, its check failed an assert
    done = tmp_path / "course" / "autograded" / grading.STUDENT / "ch07" / path.name
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in _master(done).cells}
    errors = {
        label: [o.ename for o in cells[label].outputs if o.output_type == "error"]
        for label in ("ch7-ex-depth-code", "ch7-ex-depth-test")
    }
    assert errors == {"ch7-ex-depth-code": [], "ch7-ex-depth-test": ["AssertionError"]}


def test_make_grading_writes_nbgraders_csv(tmp_path, capsys):
    target = tmp_path / "grades.csv"
    assert grading.main(["04", "--csv", str(target)]) == 0
    header, row = target.read_text().splitlines()
    fields = dict(zip(header.split(","), row.split(","), strict=True))
    assert fields["assignment"] == "ch04" and fields["student_id"] == grading.STUDENT
    # the autograded points (task and quick checks); written answers are graded by hand
    autograded = sum(c.metadata.nbgrader.points for c in _autograded(_master(CHAPTERS[3])))
    assert float(fields["score"]) == autograded == 2 + 4
    assert "chapter 04: autograde" in capsys.readouterr().out

"""Grade chapters with nbgrader itself, as a course does, and time it.

For each chosen chapter this makes a throwaway nbgrader course with book/nbgrader_config.py,
puts the master chapter in source/, runs ``nbgrader generate_assignment``, hands the master
back as the work of a student called "reference" (the master's answers are the reference
answers), runs ``nbgrader autograde`` and reads the autograded points from nbgrader's gradebook:

    python book/grading.py                # every chapter, on the fast path: cells tagged
                                          # skip-when-grading are not executed
    python book/grading.py 05 --every-cell    # every cell executed, as without the fast path
    python book/grading.py --csv grades.csv   # and the grades in nbgrader's CSV export

It prints, per chapter, the seconds nbgrader took, the autograded points against their maximum,
the written answers left for manual grading and how many code cells ran. A chapter whose
autograded points fall short of full marks makes the command exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from assignments import ROOT, chapter_paths

CONFIG = ROOT / "book" / "nbgrader_config.py"
SKIP_TAG = "skip-when-grading"
STUDENT = "reference"


@dataclass
class Graded:
    """What one autograded submission got, and how long nbgrader took."""

    chapter: str
    release_s: float  # nbgrader generate_assignment
    autograde_s: float  # nbgrader autograde of the one submission
    points: float  # autograded points
    max_points: float  # autograded points available
    written: int  # written answers (manually graded cells)
    cells_run: int  # code cells autograde executed
    cells: int  # code cells in the notebook

    @property
    def full_marks(self) -> bool:
        return self.max_points > 0 and self.points == self.max_points


def _nbgrader(course: Path, *args: str) -> float:
    """Run one nbgrader command in ``course``; its wall time in seconds. Fails loudly."""
    # nbgrader calls its tools (alembic) by name: put this Python's scripts first on the PATH.
    env = dict(
        os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    log = done.stdout + done.stderr
    if done.returncode != 0 or "[ERROR]" in log:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {done.returncode}):\n{log}")
    return seconds


def grade(
    master: Path,
    course: Path,
    every_cell: bool = False,
    submission: nbformat.NotebookNode | None = None,
) -> Graded:
    """Release ``master`` in the nbgrader course folder ``course`` (made if missing), submit
    ``submission`` (default: the master itself) as the work of the student "reference",
    autograde it and read the gradebook."""
    from nbgrader.api import Gradebook

    name = master.stem.split("_")[0]
    assignment = f"ch{name}"
    config = CONFIG.read_text()
    if every_cell:
        config += '\nc.Execute.skip_cells_with_tag = "skip-execution"  # nbclient\'s default\n'
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(config)
    source = course / "source" / assignment
    source.mkdir(parents=True, exist_ok=True)
    shutil.copy(master, source / master.name)
    release_s = _nbgrader(course, "generate_assignment", assignment, "--force")
    submitted = course / "submitted" / STUDENT / assignment
    submitted.mkdir(parents=True, exist_ok=True)
    if submission is None:
        shutil.copy(master, submitted / master.name)
    else:
        nbformat.write(submission, submitted / master.name)
    autograde_s = _nbgrader(course, "autograde", assignment, "--student", STUDENT, "--force")

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        notebook = gb.find_submission_notebook(master.stem, assignment, STUDENT)
        auto = [g for g in notebook.grades if g.cell_type == "code"]
        points = sum(g.auto_score or 0 for g in auto)
        max_points = sum(g.max_score for g in auto)
        written = sum(1 for g in notebook.grades if g.cell_type == "markdown")
    graded = nbformat.read(course / "autograded" / STUDENT / assignment / master.name, as_version=4)
    code = [c for c in graded.cells if c.cell_type == "code"]
    run = [c for c in code if c.get("execution_count") is not None]
    return Graded(name, release_s, autograde_s, points, max_points, written, len(run), len(code))


def export_csv(course: Path) -> list[str]:
    """The course's grades as nbgrader's CSV exporter writes them: a header line, then one line
    per student and assignment (score, max_score, ...)."""
    target = course / "grades.csv"
    _nbgrader(course, "export", "--to", str(target))
    return target.read_text().splitlines(keepends=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "chapters", nargs="*", help="chapter numbers or names (e.g. 05 07); default: all"
    )
    parser.add_argument(
        "--every-cell",
        action="store_true",
        help=f"execute every cell (ignore the {SKIP_TAG} tags), to compare",
    )
    parser.add_argument(
        "--course", type=Path, help="nbgrader course folder to use (default: a temporary one)"
    )
    parser.add_argument(
        "--csv",
        type=Path,
        help="write the grades to this CSV file (nbgrader export, one row per chapter)",
    )
    args = parser.parse_args(argv)
    results = []
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fcn-grading-") as tmp:
        for path in chapter_paths(args.chapters):
            course = (args.course or Path(tmp)) / path.stem
            g = grade(path, course, every_cell=args.every_cell)
            results.append(g)
            print(
                f"chapter {g.chapter}: autograde {g.autograde_s:.0f} s "
                f"(generate_assignment {g.release_s:.0f} s), "
                f"autograded points {g.points:g}/{g.max_points:g}, "
                f"{g.written} written answers to grade by hand, "
                f"{g.cells_run} of {g.cells} code cells run",
                flush=True,
            )
            if args.csv:
                rows += export_csv(course)[len(rows) > 0 :]  # one header
    if args.csv:
        args.csv.write_text("".join(rows))
        print(f"grades of {len(results)} chapter(s) written to {args.csv}")
    short = [g.chapter for g in results if not g.full_marks]
    if short:
        print(f"not full marks: chapter {', '.join(short)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

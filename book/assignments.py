"""Student versions of chapters, made by nbgrader's own preprocessors.

The chapters in notebooks/ are the *master* versions: every exercise has its solution in the
cells below it, marked the nbgrader way (cell metadata ``nbgrader.solution``; in code,
``### BEGIN SOLUTION`` / ``### END SOLUTION``; hidden checks between ``### BEGIN HIDDEN TESTS``
and ``### END HIDDEN TESTS`` in the locked, graded test cells). A student version replaces each
solution with a stub (code: ``raise NotImplementedError()``; written answers: "YOUR ANSWER
HERE"), drops the hidden tests and the outputs, and locks the cells students must not edit:

    python book/assignments.py 02 05 --out student/    # chosen chapters
    python book/assignments.py --all --out student/     # every chapter

The files are ordinary notebooks; they also work as the ``source`` of an nbgrader course
(``nbgrader generate_assignment`` with the same preprocessors, then ``nbgrader autograde``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    LockCells,
)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "notebooks"

# The order of nbgrader's generate_assignment, minus the steps that need its database.
PIPELINE = (
    CheckCellMetadata,
    LockCells,
    ClearSolutions,
    ClearOutput,
    ClearHiddenTests,
    ComputeChecksums,
    CheckCellMetadata,
)


def chapter_paths(selection: list[str]) -> list[Path]:
    """Chapter notebooks by number prefix ("05", "5") or file name; all if ``selection`` is
    empty."""
    every = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return every
    chosen = []
    for item in selection:
        key = item.removesuffix(".ipynb")
        match = [p for p in every if p.stem == key or p.stem.split("_")[0] == key.zfill(2)]
        if not match:
            names = ", ".join(p.stem for p in every)
            raise SystemExit(f"no chapter {item!r}; the chapters are: {names}")
        chosen += match
    return chosen


def student_version(master: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of a master notebook (a new notebook; the master is not changed)."""
    nb = nbformat.from_dict(master)  # a deep copy
    resources: dict = {}
    for step in PIPELINE:
        nb, resources = step().preprocess(nb, resources)
    return nb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter numbers or names (e.g. 02 05)")
    parser.add_argument("--all", action="store_true", help="every chapter")
    parser.add_argument("--out", type=Path, default=Path("student"), help="output folder")
    args = parser.parse_args(argv)
    if not args.chapters and not args.all:
        parser.error("name the chapters (e.g. 02 05) or pass --all")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in chapter_paths(args.chapters):
        student = student_version(nbformat.read(path, as_version=4))
        nbformat.write(student, args.out / path.name)
        print(f"{path.relative_to(ROOT)} -> {args.out / path.name}")


if __name__ == "__main__":
    main(sys.argv[1:])

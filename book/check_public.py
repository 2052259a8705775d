"""Check a built public book for what it must not show: the solution or the hidden tests of any
graded exercise (book/public_book.py removes them; this reads the result).

    python book/check_public.py _build/html

Looks in every chapter's page, in the notebook it offers for download (_sources) and in the
search index for nbgrader's markers and for each line of code inside a chapter's solution or
hidden-test regions (lines of 16 characters or more, so that a ``return x`` shared with the
stub is not counted, nor a line that the chapter's code also holds outside those regions).
Exits 1 and lists what it found.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)^\s*### END \1", re.S | re.M)
MIN_LINE = 16


def graded_lines(nb: nbformat.NotebookNode) -> set[str]:
    """Code lines inside the solution and hidden-test regions of a notebook's code cells that
    the rest of the notebook does not hold: a line such as ``torch.manual_seed(seed)``, or one
    that the chapter's own code holds with a comment after it, is no sign of a leak."""
    inside, rest = set(), []
    for cell in nb.cells:
        if cell.cell_type == "code":
            for _, body in REGION.findall(cell.source):
                inside.update(line.strip() for line in body.split("\n"))
            rest.append(REGION.sub("", cell.source))
        elif "{solution}" not in cell.source:  # worked solutions may repeat the graded code
            rest.append(cell.source)
    elsewhere = "\n".join(rest)
    return {
        line
        for line in inside
        if len(line) >= MIN_LINE and not line.startswith("#") and line not in elsewhere
    }


def _text(path: Path) -> str:
    raw = path.read_text(errors="replace")
    if path.suffix == ".html":
        raw = html.unescape(re.sub(r"<[^>]+>", "", raw))
    return raw


def leaks(html_dir: Path, notebooks: list[Path]) -> list[str]:
    found = []
    search = html_dir / "searchindex.js"
    for nb_path in notebooks:
        nb = nbformat.read(nb_path, as_version=4)
        secret = graded_lines(nb)
        page = f"notebooks/{nb_path.stem}"
        places = [html_dir / f"{page}.html", html_dir / "_sources" / f"{page}.ipynb", search]
        for place in places:
            if not place.exists():
                continue
            text = _text(place)
            for marker in MARKERS if place != search else ():
                if marker in text:
                    found.append(f"{place.relative_to(html_dir)}: nbgrader's marker {marker!r}")
            for line in sorted(secret):
                if line in text:
                    found.append(f"{place.relative_to(html_dir)}: graded code {line!r}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, help="the built book's html folder")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    found = leaks(args.html, notebooks)
    for line in found:
        print(line)
    graded = sum(bool(graded_lines(nbformat.read(p, as_version=4))) for p in notebooks)
    print(
        f"{len(found)} graded solution or hidden-test lines found in {args.html} "
        f"({graded} of {len(notebooks)} chapters have graded exercises)"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

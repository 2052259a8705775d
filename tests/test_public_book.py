"""The public book shows no graded solution and no hidden test (book/public_book.py), and
book/check_public.py finds them where they are: a small book, built by Sphinx with the same
extensions as the course's, in both editions."""

import html
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECRET = "return x * 4242 + 17"  # the graded solution
HIDDEN = "assert f(2) == 2 * 4242 + 17  # hidden check"
WRITTEN = "The free answer is 31337."  # a written exercise's worked solution


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"book_{name}", ROOT / "book" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _cell(kind, source, nbgrader=None):
    cell = {"cell_type": kind, "id": f"c{abs(hash(source)) % 10**8}", "metadata": {}}
    cell["source"] = source
    if nbgrader:
        cell["metadata"]["nbgrader"] = {"schema_version": 3, "locked": False, **nbgrader}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


CHAPTER = {
    "cells": [
        _cell("markdown", "# A chapter\n\n````{exercise}\n:label: ex-graded\nWrite f.\n````"),
        _cell(
            "code",
            "def f(x):\n    ### BEGIN SOLUTION\n    " + SECRET + "\n    ### END SOLUTION",
            {"grade": False, "solution": True, "grade_id": "f-code"},
        ),
        _cell(
            "code",
            "assert f(1) == 4259\n### BEGIN HIDDEN TESTS\n" + HIDDEN + "\n### END HIDDEN TESTS",
            {"grade": True, "solution": False, "grade_id": "f-test", "points": 1},
        ),
        _cell(
            "markdown",
            "````{solution} ex-graded\n:class: dropdown\n\n```python\ndef f(x):\n    "
            + SECRET
            + "\n```\n````",
            {"grade": True, "solution": True, "grade_id": "f-answer", "points": 1},
        ),
        _cell("markdown", "## More\n\n````{exercise}\n:label: ex-free\nThink.\n````"),
        _cell("markdown", "````{solution} ex-free\n:class: dropdown\n\n" + WRITTEN + "\n````"),
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def _build(tmp_path: Path, edition: str) -> Path:
    src = tmp_path / "src"
    (src / "notebooks").mkdir(parents=True, exist_ok=True)
    (src / "notebooks" / "ch.ipynb").write_text(json.dumps(CHAPTER))
    (src / "index.md").write_text("# Book\n\n```{toctree}\nnotebooks/ch\n```\n")
    (src / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'book')!r})\n"
        "extensions = ['myst_nb', 'sphinx_exercise', 'public_book']\n"
        "nb_execution_mode = 'off'\n"
        "html_sourcelink_suffix = ''  # as Jupyter Book sets it\n"
        "exclude_patterns = ['_build']\n"
    )
    out = tmp_path / edition
    env = {**os.environ, "FCN_BOOK": edition}
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _page(out: Path) -> str:
    raw = (out / "notebooks" / "ch.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("book")
    return {edition: _build(tmp, edition) for edition in ("public", "instructor")}


@pytest.mark.slow
def test_the_public_book_shows_the_stub_and_no_graded_solution_or_hidden_test(built):
    page = _page(built["public"])
    assert SECRET not in page and HIDDEN not in page
    assert "BEGIN SOLUTION" not in page and "BEGIN HIDDEN TESTS" not in page
    assert "raise NotImplementedError()" in page, "the stub a student fills in"
    assert "assert f(1) == 4259" in page, "the visible test stays"
    assert "This exercise is graded" in page, "the graded solution says where it went"
    assert WRITTEN in page, "an ungraded exercise keeps its worked solution"
    source = (built["public"] / "_sources" / "notebooks" / "ch.ipynb").read_text()
    assert SECRET not in source and HIDDEN not in source and "BEGIN" not in source
    assert WRITTEN in source


def test_the_instructors_edition_shows_everything(built):
    page = _page(built["instructor"])
    assert SECRET in page and HIDDEN in page and WRITTEN in page
    assert "This exercise is graded" not in page


def test_check_public_finds_the_graded_code_where_it_is(built, tmp_path):
    check = _load("check_public")
    chapter = tmp_path / "ch.ipynb"
    chapter.write_text(json.dumps(CHAPTER))
    assert check.graded_lines(check.nbformat.read(chapter, as_version=4)) == {SECRET, HIDDEN}
    assert check.leaks(built["public"], [chapter]) == []
    found = check.leaks(built["instructor"], [chapter])
    assert any(SECRET in line for line in found) and any(HIDDEN in line for line in found)
    assert any("BEGIN SOLUTION" in line for line in found)


def test_an_unknown_edition_is_refused(tmp_path):
    with pytest.raises(AssertionError, match="FCN_BOOK='draft': expected one of public, instr"):
        _build(tmp_path, "draft")

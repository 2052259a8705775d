"""Every chapter's structure: Colab badge and install cell name the book's repository, a
papermill `parameters` cell, exercises with solutions, and no stored outputs."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))  # the chapters and any other page
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
REPO = REPO_URL.removeprefix("https://github.com/")


def _cells(path):
    nb = json.loads(path.read_text())
    return [(c["cell_type"], "".join(c["source"]), c) for c in nb["cells"]]


def test_there_are_chapters_and_all_are_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    assert CHAPTERS
    for path in CHAPTERS:
        assert f"notebooks/{path.stem}" in toc, f"{path.name} is missing from _toc.yml"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_badge_names_the_repository(path):
    cells = _cells(path)
    badge = f"colab.research.google.com/github/{REPO}/blob/main/notebooks/{path.name}"
    assert any(kind == "markdown" and badge in src for kind, src, _ in cells[:2]), badge


def _install_lines(path) -> str:
    """The top of the second code cell, down to the end of its ``if`` block (the install)."""
    code = [src for kind, src, _ in _cells(path) if kind == "code"]
    head, sep, _ = code[1].partition("importlib.invalidate_caches()")
    assert sep, f"{path.name}: the second code cell does not install fcnlib"
    return head + sep


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_installs_from_the_repository_in_colab_or_when_missing(path):
    text = _install_lines(path)
    assert text == _install_lines(NOTEBOOKS[0]), "the install lines differ between notebooks"
    assert f'"fcnlib @ git+{REPO_URL}"' in text  # the repository of _config.yml
    assert 'missing = importlib.util.find_spec("fcnlib") is None' in text
    assert 'if "google.colab" in sys.modules or missing:' in text
    assert '[sys.executable, "-m", "pip", "install", "-q"]' in text  # this kernel's own Python
    assert "--disable-pip-version-check" in text  # no "new release of pip" notice in the output
    assert "%pip" not in text  # plain Python: no magic, no "restart the kernel" note
    # The comment says what happens, and the one command that does it by hand.
    assert "always in Colab" in text and "only if it is missing" in text
    assert "No restart" in text and f'pip install "fcnlib @ git+{REPO_URL}"' in text


class _FakePip:
    """Stands in for ``subprocess.run``: records the commands, answers with a set exit status."""

    def __init__(self):
        self.calls, self.returncode, self.stderr = [], 0, ""

    def __call__(self, args, **kwargs):
        self.calls.append(args)
        return subprocess.CompletedProcess(args, self.returncode, "", self.stderr)


@pytest.fixture
def pip(monkeypatch):
    fake = _FakePip()
    monkeypatch.setattr(subprocess, "run", fake)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    return fake


def _run_install_lines():
    exec(_install_lines(CHAPTERS[0]), {})


def test_install_lines_do_nothing_where_fcnlib_is_importable(pip):
    assert importlib.util.find_spec("fcnlib") is not None
    _run_install_lines()
    assert pip.calls == []


@pytest.mark.parametrize("where", ["colab", "fcnlib missing"])
def test_install_lines_run_pip_in_colab_and_where_fcnlib_is_missing(where, pip, monkeypatch):
    if where == "colab":
        monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    else:
        real = importlib.util.find_spec

        def find_spec(name, *args):
            return None if name == "fcnlib" else real(name, *args)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    _run_install_lines()
    quiet = ["-q", "--disable-pip-version-check"]  # no notice about pip's own version either
    assert pip.calls == [
        [sys.executable, "-m", "pip", "install", *quiet, f"fcnlib @ git+{REPO_URL}"]
    ]


def test_install_lines_show_pips_error_and_stop(pip, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    pip.returncode, pip.stderr = 1, "ERROR: could not reach github.com\n"
    with pytest.raises(subprocess.CalledProcessError):
        _run_install_lines()
    assert capsys.readouterr().out == "ERROR: could not reach github.com\n"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_parameters_cell_comes_first(path):
    code = [c for kind, _, c in _cells(path) if kind == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_exercises_have_solutions_and_outputs_are_not_stored(path):
    cells = _cells(path)
    text = "\n".join(src for kind, src, _ in cells if kind == "markdown")
    labels = re.findall(r"\{exercise\}[^\n]*\n:label: (\S+)", text)
    solved = re.findall(r"\{solution\} (\S+)", text)
    assert len(labels) >= 3 and sorted(labels) == sorted(solved)
    for kind, _, cell in cells:
        if kind == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None


WIDE = 11  # inches: wider figures are shrunk in the text column until their labels blur


def _figure_widths(source: str) -> list[float]:
    """The widths of the figures a cell makes with ``figsize=(w, h)`` (``3 * n`` counts as 12)."""
    widths = []
    for m in re.finditer(r"figsize=\(([^,]+),", source):
        expr = m.group(1).strip()
        widths.append(float(expr) if re.fullmatch(r"\d+(\.\d+)?", expr) else 12.0)
    return widths


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_wide_figures_take_the_pages_full_width(path):
    # The book's `full-width` cell tag lets the output use the margin as well: a 13-inch figure
    # is shown about a third larger, so its titles and labels stay legible.
    narrow = [
        i
        for i, (kind, src, cell) in enumerate(_cells(path))
        if kind == "code"
        and any(w >= WIDE for w in _figure_widths(src))
        and "full-width" not in cell["metadata"].get("tags", [])
    ]
    assert not narrow, f"{path.name}: cells {narrow} draw figures {WIDE}+ in wide; tag them"


CODE_COLUMN = 76  # a code cell at a 1280-pixel-wide window (conftest.py says how it was measured)
BOX_COLUMN = 68  # a code block inside an exercise or solution box
FOLDED_COLUMN = 72  # a code cell tagged hide-input, shown in a fold about 73 characters wide
_FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_fits_the_books_column(path):
    wide = []
    for i, (kind, src, cell) in enumerate(_cells(path)):
        if kind == "code":
            folded = "hide-input" in cell["metadata"].get("tags", [])
            limit = FOLDED_COLUMN if folded else CODE_COLUMN
            wide += [(i, line) for line in src.split("\n") if len(line) > limit]
        elif kind == "markdown":
            for block in _FENCE.findall(src):
                wide += [(i, line) for line in block.split("\n") if len(line) > BOX_COLUMN]
    assert not wide, (
        f"{path.name}: code wider than the book's column ({CODE_COLUMN} characters in a cell, "
        f"{FOLDED_COLUMN} in a folded one, {BOX_COLUMN} in an exercise's box): {wide[:5]}. "
        "`make format` fits most of it"
    )


def test_the_chapters_are_formatted():
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run(
        [str(ruff), "format", "--check", "notebooks"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr + "run `make format`"


@pytest.mark.slow
def test_a_cell_that_prints_past_the_column_fails_under_nbval(tmp_path):
    # The check in conftest.py, end to end: nbval runs a notebook of four cells.
    cells = [
        ("print('x' * 76)", []),
        ("print('x' * 90)", ["full-width"]),
        ("print('x' * 77)", []),
        ("(\n    'x' * 90\n);", []),  # a result the ";" hides: not shown in the book
    ]
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"c{i}",
                "metadata": {"tags": t},
                "outputs": [],
                "source": src,
            }
            for i, (src, t) in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "wide.ipynb").write_text(json.dumps(nb))
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "-q",
            "wide.ipynb",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "3 passed, 1 failed" in done.stdout or "1 failed, 3 passed" in done.stdout, done.stdout
    assert "wider than the book's column (76 characters)" in done.stdout

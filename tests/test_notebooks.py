"""Every chapter's structure: Colab badge and install cell name the book's repository, a
papermill `parameters` cell, exercises with solutions, and no stored outputs."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
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
def test_colab_badge_and_install_cell_name_the_repository(path):
    cells = _cells(path)
    badge = f"colab.research.google.com/github/{REPO}/blob/main/notebooks/{path.name}"
    assert any(kind == "markdown" and badge in src for kind, src, _ in cells[:2]), badge
    code = [src for kind, src, _ in cells if kind == "code"]
    assert any(f"git+{REPO_URL}" in src and "google.colab" in src for src in code[:2])


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

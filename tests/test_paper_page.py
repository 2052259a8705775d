"""The paper-at-a-glance page (notebooks/paper_at_a_glance.ipynb): in the book's reference part,
set up like a chapter, every number in its prose either glued from its own run or one of the
paper's listed below with its source, and every chapter its tables name still running what the
page says it runs. nbval executes the page itself (its asserts check the lab-bench runs)."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "notebooks" / "paper_at_a_glance.ipynb"
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
REPO = REPO_URL.removeprefix("https://github.com/")

# The prose scanner of the chapters' test: what counts as a number written into the text.
_spec = importlib.util.spec_from_file_location(
    "chapter_numbers", ROOT / "tests" / "test_chapter_numbers.py"
)
chapter_numbers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chapter_numbers)


def _numbers(text: str) -> list[str]:
    return text.split()


# Every number the page writes out, with where it comes from. The tables quote the paper
# (arXiv 1411.4038v2, whose appendices hold Appendix A and PASCAL-Context) and the README of the
# authors' reference code (fcn.berkeleyvision.org) for the official models; nothing here is a
# measurement of the page's own run, which is glued.
PAPER: dict[str, str] = {
    **dict.fromkeys(_numbers("39.8 56.0 42.5"), "Table 1"),
    **dict.fromkeys(("50 ms", "210 ms", "59 ms"), "Table 1's forward times"),
    **dict.fromkeys(
        _numbers("83.0 59.7 45.4 72.0 89.1 73.3 59.4 81.4 90.0 75.7 62.4 90.3 75.9 62.7 83.2"),
        "Table 2",
    ),
    **dict.fromkeys(_numbers("47.9 52.6 51.6 62.2"), "Table 3"),
    **dict.fromkeys(("50 s", "175 ms"), "Table 3's inference times"),
    **dict.fromkeys(
        _numbers(
            "60.3 28.6 47.0 60.0 42.2 29.2 43.9 61.5 42.4 30.5 45.5 57.1 35.2 24.2 40.4 64.3 "
            "44.9 32.8 48.0 65.4 46.1 34.0 49.5"
        ),
        "Table 4 (NYUDv2)",
    ),
    **dict.fromkeys(_numbers("85.2 51.7 39.5 76.1 94.3"), "Table 5 (SIFT Flow)"),
    **dict.fromkeys(
        _numbers(
            "31.5 63.8 42.7 31.8 48.3 65.7 46.2 34.8 50.7 65.9 46.5 35.1 51.0 46.1 69.8 65.1 "
            "50.4 54.9 71.8 68.0 53.4 57.5 67.6 53.5 57.7"
        ),
        "Appendix B (PASCAL-Context, Table 6)",
    ),
    **dict.fromkeys(_numbers("50.9 73.3 86.1 92.8 96.4 98.5"), "Appendix A"),
    **dict.fromkeys(_numbers("63.6 65.0 65.5 65.4 48.0 67.2"), "the reference code's models"),
    "0.99": "the heavy recipe's momentum",
    "4.3": "a section number (the paper's experimental framework)",
}

# Chapters the page's tables name, and what their code must still contain for the row to hold.
EVIDENCE: dict[str, tuple[str, ...]] = {
    "02": ("score_only", "sample_fraction"),  # FCN-32s-fixed; loss sampling
    "03": ("alexnet", "vgg16", "googlenet"),  # Table 1's geometry
    "04": ("stitch", "learnable"),  # shift-and-stitch; learned against fixed upsampling
    "05": ("fcn16s", "fcn8s", "init_from"),  # Table 2's skips, staged and at once
    "06": ("stage_recipe", "seg11valid", "heavy"),  # the full-scale recipe
    "07": ("expand_input", "LateFusion", "coarse_labels", "depth_only"),  # Tables 4, 5, App. A
}


def _cells(kind: str | None = None) -> list[dict]:
    cells = json.loads(PAGE.read_text())["cells"]
    return [c for c in cells if kind is None or c["cell_type"] == kind]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def test_the_page_is_in_the_reference_part_before_the_bibliography():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    (reference,) = [p for p in toc["parts"] if p["caption"] == "Reference"]
    files = [c["file"] for c in reference["chapters"]]
    assert files.index("notebooks/paper_at_a_glance") < files.index("book/bibliography")
    assert not re.match(r"\d\d_", PAGE.name), "not a numbered chapter"


def test_set_up_like_a_chapter_and_committed_without_outputs():
    cells = _cells()
    badge = f"colab.research.google.com/github/{REPO}/blob/main/notebooks/{PAGE.name}"
    assert badge in _text(cells[0])
    code = _cells("code")
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert f"git+{REPO_URL}" in _text(code[1]) and "google.colab" in _text(code[1])
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None
    ids = [c["id"] for c in cells]
    assert len(ids) == len(set(ids))


def test_every_prose_number_is_glued_or_the_papers():
    found = []
    for cell in _cells("markdown"):
        text = chapter_numbers._NOT_PROSE.sub(" ", _text(cell))
        found += [m.group(1) for m in chapter_numbers._NUMBER.finditer(text)]
    unknown = sorted(set(found) - set(PAPER))
    assert not unknown, f"numbers neither glued nor listed with their source: {unknown}"
    missing = sorted(set(PAPER) - set(found))
    assert not missing, f"listed as quoted but not on the page (drop them from PAPER): {missing}"


def test_every_glued_name_is_set_by_the_page():
    used = {k for c in _cells("markdown") for k in chapter_numbers._GLUED.findall(_text(c))}
    set_here = {k for c in _cells("code") for k in chapter_numbers._GLUE_CALL.findall(_text(c))}
    assert "page_seconds" in used
    assert used <= set_here, f"glued in the text but never set: {used - set_here}"


def test_the_last_column_names_only_chapters_that_run_it():
    prose = "\n".join(_text(c) for c in _cells("markdown"))
    named = set(re.findall(r"Chapters? (\d)", prose)) | {
        n for pair in re.findall(r"Chapters (\d) and (\d)", prose) for n in pair
    }
    assert named and named <= {n[-1] for n in EVIDENCE}, named
    for number, needles in EVIDENCE.items():
        (path,) = (ROOT / "notebooks").glob(f"{number}_*.ipynb")
        code = "\n".join(_text(c) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "code")  # fmt: skip
        for needle in needles:
            assert needle in code, f"{path.name} lacks {needle!r}: fix the page's tables"


@pytest.mark.parametrize("term", ["trimap", "one-cycle", "AdamW", "align="])
def test_glossary_defines_the_terms_the_chapters_use(term):
    notation = (ROOT / "book" / "notation.md").read_text()
    glossary = notation.split("```{glossary}", 1)[1].split("```", 1)[0]
    terms = [line for line in glossary.splitlines() if line and not line.startswith(" ")]
    assert terms.count(term) == 1, f"{term!r} should be defined once in the glossary"

"""The chapters' prose quotes measured numbers only through myst-nb glue.

A number written by hand in a chapter's text goes stale the first time the code, the data or the
hardware changes, and the rendered book then contradicts its own outputs. So every measured
number in a markdown cell is glued (``{glue:text}`key:.1f```, the key set by
``fcnlib.book.glue("key", value)`` in a code cell of the same chapter). What remains written out
is listed below with the reason: the paper's numbers, constants of the setup, estimates.
"""

import ast
import json
import re
from collections import Counter
from pathlib import Path

import pytest

CHAPTERS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Text that holds no prose number: math, roles ({cite}, {glue:text}, ...), code, link targets.
_NOT_PROSE = re.compile(
    r"\$\$.*?\$\$|\$[^$\n]*\$|\{[a-z:-]+\}`[^`]*`|``[^`]*``|`[^`]*`|\]\([^)]*\)|<[^>]*>", re.S
)
# A decimal, or a whole number with a unit of time, a percentage or a factor ("5x").
_NUMBER = re.compile(
    r"(?<![\w.\-/])(\d+(?:\.\d+)?\s(?:s|ms|min|minutes|seconds|hours)\b|\d+(?:\.\d+)?x\b"
    r"|\d+(?:\.\d+)?\s?%|\d+\.\d+)"
)
_GLUED = re.compile(r"\{glue(?::[a-z]+)?\}`([^`:]+)")
_GLUE_CALL = re.compile(r"""glue\(\s*f?["']([^"']+)["']""")

# Written-out numbers that are not measurements of this chapter's run, with the reason.
ALLOWED: dict[str, dict[str, str]] = {
    "01": {
        "40 minutes": "reading-time estimate in the frame",
        **dict.fromkeys(("5%", "40%"), "the scenes' object radii, a constant of the generator"),
        "80%": "a quick check's made-up scenes, not a measurement",
    },
    "02": {
        "45 minutes": "reading-time estimate in the frame",
        **dict.fromkeys(("22 ms", "1.2 ms", "5x", "45.4", "59.4"), "the paper's numbers"),
        "32x": "FCN-32s's upsampling factor, its output stride",
        **dict.fromkeys(("0.05", "5%"), "the sampling fraction an exercise asks to try"),
        "4.3": "the paper's section number",
    },
    "03": {
        "50 minutes": "reading-time estimate in the frame",
        **dict.fromkeys(("10%", "80%"), "the scenes' object diameters, a generator constant"),
        "90%": "the mass threshold of the effective-field measure (mass=0.9)",
    },
    "04": {"50 minutes": "reading-time estimate in the frame"},
    "05": {
        "50 minutes": "reading-time estimate in the frame",
        "0.1": "the official at-once FCN-8s's distance to the staged nets (their repository)",
        **dict.fromkeys(("3.0", "0.3"), "the paper's gains of FCN-16s and FCN-8s (Table 2)"),
        **dict.fromkeys(
            ("98.5", "96.4", "92.8", "86.1"), "the paper's Appendix A bounds (factors 4 to 32)"
        ),
    },
    "06": {
        "35 minutes": "reading-time estimate in the frame",
        **dict.fromkeys(("103.939", "116.779", "123.68"), "Caffe VGG16's BGR mean pixel"),
        **dict.fromkeys(
            ("0.485", "0.456", "0.406", "0.229", "0.224", "0.225"),
            "torchvision's ImageNet mean and std",
        ),
        **dict.fromkeys(("56.0", "59.4"), "the paper's FCN-VGG16 without and with SBD's labels"),
        **dict.fromkeys(("63.6", "65.5"), "the official Caffe models' mean IU"),
        "0.99": "the official recipe's momentum",
    },
    "07": {
        "45 minutes": "reading-time estimate in the frame",
        **dict.fromkeys(("85.2%", "39.5", "94.3%"), "the paper's SIFT Flow results"),
        **dict.fromkeys(
            ("29.2", "32.8", "34.0"), "the paper's NYUDv2 results (Table 4: RGB, RGB-HHA 32s, 16s)"
        ),
        "62.7": "the paper's FCN-8s mean IU (Table 2), beside the Appendix A bound",
        **dict.fromkeys(
            ("98.5", "96.4", "92.8", "86.1", "73.3", "50.9"), "the paper's Appendix A table"
        ),
        **dict.fromkeys(("0.0", "0.6"), "camouflage settings an exercise asks for"),
    },
}


def _cells(path: Path, kind: str) -> list[str]:
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


def prose_numbers(path: Path) -> list[str]:
    found = []
    for text in _cells(path, "markdown"):
        found += [m.group(1) for m in _NUMBER.finditer(_NOT_PROSE.sub(" ", text))]
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_measured_numbers_in_the_prose_are_glued(path):
    allowed = ALLOWED[path.name[:2]]
    written = Counter(n for n in prose_numbers(path) if n not in allowed)
    assert not written, (
        f"{path.name}: numbers written into the prose by hand {dict(written)}; glue them from "
        "the cell that measures them (fcnlib.book.glue), or, for the paper's numbers and "
        "constants, list them in ALLOWED with the reason"
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_glued_name_is_set_by_the_chapter(path):
    used = {k for text in _cells(path, "markdown") for k in _GLUED.findall(text)}
    set_here = {k for text in _cells(path, "code") for k in _GLUE_CALL.findall(text)}
    assert used <= set_here, f"{path.name}: glued in the text but never set: {used - set_here}"
    assert used, f"{path.name}: the frame's run time, at least, is glued"


def test_the_scanner_finds_what_it_should():
    text = (
        "FCN-32s scores 26.4 mean IU in 115 s, 1.14x faster, 5% of pixels, a 500 x 500 image, "
        "$k = 0.5$, `lr=0.01`, {cite}`long2015fcn`, {glue:text}`iu:.1f` and [a](x/1.2/y)."
    )
    found = [m.group(1) for m in _NUMBER.finditer(_NOT_PROSE.sub(" ", text))]
    assert found == ["26.4", "115 s", "1.14x", "5%"]


def _last_expression(source: str) -> str | None:
    """The cell's last statement if IPython would display its value, else None."""
    lines = [
        line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!"))
        else line
        for line in source.splitlines()
    ]  # fmt: skip
    tree = ast.parse("\n".join(lines))
    if not tree.body or source.rstrip().endswith(";") or not isinstance(tree.body[-1], ast.Expr):
        return None
    value = tree.body[-1].value
    if isinstance(value, ast.Call) and not (
        isinstance(value.func, ast.Name) and value.func.id == "glue"
    ):
        return None  # a call's value is shown only if it returns one (print, plt.show: None)
    if isinstance(value, ast.Tuple) and not all(
        isinstance(e, ast.Call) and getattr(e.func, "id", None) == "glue" for e in value.elts
    ):
        return None
    return ast.unparse(value)


@pytest.mark.parametrize(
    "path", [*CHAPTERS, CHAPTERS[0].parent / "paper_at_a_glance.ipynb"], ids=lambda p: p.stem
)
def test_no_cell_ends_in_a_stray_value(path):
    """glue returns its value, so a cell ending in glue(...) prints a bare number under it."""
    stray = [e for e in map(_last_expression, _cells(path, "code")) if e is not None]
    assert not stray, f"{path.name}: cells end in a value the reader sees unexplained: {stray}"

"""Comparisons in the chapters' prose are backed by the run, not only their numbers.

``test_chapter_numbers`` makes every measured number in the text a glued one; a comparison in
words ("beats", "agrees almost everywhere", "still", "far below") escapes it. This scanner finds
each sentence of a chapter's markdown that compares in words and asks where the comparison is
backed. A sentence passes when

- it glues a number of the run ({glue:text}`...`): the reader sees the measurement beside it;
- it reports the paper or another work (it cites, or names "the paper"): not this run's claim;
- its cell sits next to a code cell that asserts: the claims of a results paragraph are checked
  by the cell that measured them (the assertions carry the seed-to-seed margins);
- or it is listed in ``CLAIMS`` below, with either the assertion that backs it -- an ``assert``
  line of the same chapter that must contain the given text, so deleting the assertion fails
  this test -- or the reason it is not a claim about a measurement.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAGES = [*CHAPTERS, ROOT / "notebooks" / "paper_at_a_glance.ipynb"]  # the reference page too

_NOT_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|``[^`]*``|`[^`]*`|\]\([^)]*\)|<[^>]*>", re.S)
_ROLE = re.compile(r"\{[a-z:-]+\}(?=`)")  # keeps the role's name, drops its target with _NOT_PROSE
COMPARISON = re.compile(
    r"\b(beats?|beaten|outperform(?:s|ed)?|wins?|won|loses?|better|worse|higher|lower|faster|"
    r"slower|sharper|improve[sd]?|gains?|almost everywhere|almost all|nearly all|most of|"
    r"far (?:more|less|better|worse|above|below)|agree[sd]?|still|close to|level with)\b",
    re.I,
)
_OTHERS = re.compile(r"\{cite\}|\bpaper\b|\bpaper's\b", re.I)

# Sentences the rules above do not cover: a fragment of the sentence -> its backing. "assert: X"
# names an assertion of the chapter (an assert line containing X); anything else says why the
# sentence is not a claim about this run.
CLAIMS: dict[str, dict[str, str]] = {
    "02": {
        "one dense pass beats": 'assert: lab_cost["sliding"] > 1.5 * lab_cost["dense"]',
        "Fine-tuning every layer beats training only the new score layer": (
            "assert: scores_whole.mean_iu > scores_score.mean_iu"
        ),
        "(a) about four times faster": "a quick check's choices, which the learner picks from",
    },
    "04": {
        "with so few steps, expect it to end well below": (
            "a prediction the ungraded exercise asks the learner to test by running it"
        ),
    },
    "05": {
        "Each stage trains with a lower learning rate": "describes the recipe's settings",
        "labels the most pixels better than FCN-32s": "how the figure's scene is chosen",
    },
    "07": {
        "where the scenes gain a second label set": "describes the data",
        "The lab scenes gain a second label set": "describes the data",
        "The lab scenes gain depth": "describes the data",
        "would keep the heads separate and still learn": "a design note on grouped upsampling",
        "so it can beat any blockwise labelling": (
            "a property of bilinear upsampling (it can draw a boundary inside a block), "
            "not a measurement"
        ),
        "the gain of both fusions should grow": (
            "a prediction the ungraded exercise asks the learner to test by running it"
        ),
        "Compare the gains with the differences": "advice to the learner",
        "the three validation scenes on which the two nets disagree most": (
            "glue: dilated_disagree, measured on those scenes"
        ),
        "its stride-8 output is still computed from deep features alone": (
            "a reading the text marks as untested"
        ),
        "on the lab bench one did not beat FCN-8s": 'assert: iu[d8, "whole"] < iu[f8, "whole"] + 1',
        "the chapter's run already shows depth helping on the visible objects": (
            "assert: visible_right[1] > visible_right[0]"
        ),
    },
}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _sentences(markdown: str) -> list[str]:
    lines = [line for line in markdown.splitlines() if not line.lstrip().startswith("#")]
    text = _NOT_PROSE.sub(" ", _ROLE.sub(lambda m: m.group(0) + "X", "\n".join(lines)))
    return [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+|\n\s*\n|\n- ", text)]


def unbacked(path: Path) -> list[str]:
    """The sentences of a chapter that compare in words with nothing to back them."""
    cells, listed = _cells(path), CLAIMS.get(path.name[:2], {})
    found = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        beside = [cells[j] for j in (i - 1, i + 1) if 0 <= j < len(cells)]
        if any(c["cell_type"] == "code" and "assert" in _text(c) for c in beside):
            continue
        for sentence in _sentences(_text(cell)):
            if not COMPARISON.search(sentence) or "{glue" in sentence or _OTHERS.search(sentence):
                continue
            if not any(fragment in sentence for fragment in listed):
                found.append(sentence)
    return found


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.stem)
def test_every_comparison_in_words_is_backed(path):
    found = unbacked(path)
    assert not found, (
        f"{path.name}: comparisons in words with no glued number, no assertion beside them and "
        f"no entry in CLAIMS: {found}. Glue the number that shows it, assert it in the cell that "
        "measures it, or list the sentence in CLAIMS with its backing"
    )


def _assert_statements(source: str) -> list[str]:
    """The source text of every assert statement of a code cell (IPython magics left out)."""
    code = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n")
    )
    tree = ast.parse(code)
    return [
        ast.get_source_segment(code, node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert)
    ]


@pytest.mark.parametrize("number", sorted(CLAIMS))
def test_every_listed_claim_is_in_the_prose_and_its_assertion_in_the_code(number):
    (path,) = (ROOT / "notebooks").glob(f"{number}_*.ipynb")
    cells = _cells(path)
    prose = " ".join(" ".join(_text(c).split()) for c in cells if c["cell_type"] == "markdown")
    # Each assert statement whole, whitespace taken out: a formatter may spread one over lines.
    asserts = [
        "".join(statement.split())
        for c in cells
        if c["cell_type"] == "code"
        for statement in _assert_statements(_text(c))
    ]
    for fragment, backing in CLAIMS[number].items():
        assert fragment in prose, f"{path.name}: {fragment!r} is no longer in the prose"
        if backing.startswith("assert: "):
            needle = backing.removeprefix("assert: ")
            assert any("".join(needle.split()) in statement for statement in asserts), (
                f"{path.name}: {fragment!r} is backed by an assertion containing {needle!r}, "
                "which the chapter no longer makes"
            )


def test_the_scanner_finds_what_it_should():
    cells = [
        {"cell_type": "markdown", "source": ["FCN-8s beats FCN-32s.\n\n## What still holds\n"]},
        {
            "cell_type": "markdown",
            "source": ["It scores {glue:text}`iu:.1f`, far above the rest. "],
        },
        {"cell_type": "markdown", "source": ["The paper found it better {cite}`long2015fcn`."]},
    ]
    flagged = [s for c in cells for s in _sentences(_text(c)) if COMPARISON.search(s)]
    assert flagged[0] == "FCN-8s beats FCN-32s."
    assert "{glue" in flagged[1] and _OTHERS.search(flagged[2])
    assert len(flagged) == 3, "headings are not claims"

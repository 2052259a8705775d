"""The Colab copies (book/colab.py): plain Markdown, autograded solutions gone, written ones folded,
citations as linked text, code as in the student versions, valid notebooks."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

pytestmark = pytest.mark.slow  # converts every chapter: `make unit` leaves these out

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"book_{name}", ROOT / "book" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


colab = _load("colab")
assignments = _load("assignments")

NOTEBOOKS = colab.notebook_paths(ROOT)
REPO = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
OWNER, NAME = REPO.removeprefix("https://github.com/").strip("/").split("/")
BIBLIOGRAPHY = f"https://{OWNER}.github.io/{NAME}/book/bibliography.html"
ROLE = re.compile(r"\{\w[\w:.+-]*\}`")
FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*\{", re.M)
OPTION = re.compile(r"^\s*:(class|label):", re.M)
DETAILS = re.compile(r"<details>\n<summary>Solution</summary>\n\n(.*?)\n\n</details>", re.S)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """Every notebook's copy, built into a fresh folder: name -> (master, copy, problems)."""
    out = tmp_path_factory.mktemp("colab")
    problems = colab.build(out, root=ROOT)
    assert sorted(p.name for p in problems) == sorted(p.name for p in NOTEBOOKS)
    return {
        path.name: (nbformat.read(path, as_version=4), nbformat.read(out / path.name, 4), found)
        for path in NOTEBOOKS
        for found in [problems[out / path.name]]
    }


def _markdown(nb):
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def _solutions(master):
    """label -> body of each {solution} directive in the master's markdown."""
    found = {}
    for source in _markdown(master):
        for match in re.finditer(r"^(`{3,})\{solution\} (\S+)\n(.*?)^\1\s*$", source, re.S | re.M):
            found[match[2]] = match[3]
    return found


def _autograded(master):
    """The exercises that nbgrader autogrades, by the grade_id convention of their code cells
    (``<label>-code``, ``<label>-test``): found independently of book/colab.py. The quick checks
    (``chN-quiz``) are graded too, but are no exercise."""
    labels = {
        re.sub(r"-(code|test)$", "", c.metadata["nbgrader"]["grade_id"])
        for c in master.cells
        if c.cell_type == "code" and "nbgrader" in c.metadata
    }
    return {label for label in labels if not label.endswith("-quiz")}


def _plain_lines(body):
    """Lines of a solution's text that the conversion leaves as they are."""
    return [
        line.strip()
        for line in body.splitlines()
        if len(line.strip()) > 20 and "{" not in line and not re.match(r"\s*(:|`{3})", line)
    ]


def test_there_are_notebooks_and_autograded_exercises(copies):
    assert len(NOTEBOOKS) >= 7
    graded = {name for name, (master, _, _) in copies.items() if _autograded(master)}
    assert {"05_skip_fusion.ipynb", "07_beyond.ipynb"} <= graded


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_copy_has_no_myst_left_and_is_valid(copies, path):
    master, copy, problems = copies[path.name]
    assert problems == []
    nbformat.validate(copy)
    assert copy.nbformat == 4
    for source in _markdown(copy):
        assert not ROLE.search(source), ROLE.search(source)
        assert not FENCE.search(source), FENCE.search(source)
        assert not OPTION.search(source), OPTION.search(source)
    text = json.dumps(copy)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    # every glued number became a placeholder, but for those in the solutions taken out
    glued = sum(s.count("{glue:text}`") for s in _markdown(master))
    solutions = _solutions(master)
    glued -= sum(solutions[label].count("{glue:text}`") for label in _autograded(master))
    placeholders = re.findall(
        r"\*\[(?:`\w+`, )?(?:printed|computed) (?:above|below)\]\*", "".join(_markdown(copy))
    )
    assert len(placeholders) == glued


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_autograded_solutions_are_gone_and_written_ones_folded(copies, path):
    master, copy, _ = copies[path.name]
    solutions = _solutions(master)
    graded = _autograded(master)
    assert graded == colab.autograded_exercises(master)
    assert graded <= set(solutions)
    text = json.dumps(copy)
    # the master without the autograded solutions and the hidden tests
    others = "\n".join(c.source for c in master.cells)
    others = re.sub(r"### BEGIN (SOLUTION|HIDDEN TESTS).*?### END \1", "", others, flags=re.S)
    for label in graded:
        others = others.replace(solutions[label], "")
    for label in graded:  # its written solution, its code and its hidden tests
        gone = _plain_lines(solutions[label])
        for cell in master.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id", "").startswith(label):
                regions = re.findall(
                    r"BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)### END", cell.source, re.S
                )
                gone += [line.strip() for r in regions for line in r.splitlines() if line.strip()]
        gone = [line for line in gone if line not in others]  # lines found elsewhere may stay
        assert gone
        for line in gone:
            assert json.dumps(line)[1:-1] not in text, line
    folded = DETAILS.findall("\n\n".join(_markdown(copy)))
    assert len(folded) == len(solutions) - len(graded)
    assert "<details>" not in "".join(c.source for c in copy.cells if c.cell_type == "code")
    for label, body in solutions.items():
        if label not in graded:
            lines = _plain_lines(body)
            assert any(all(line in block for line in lines) for block in folded), label


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_citations_became_linked_text(copies, path):
    master, copy, _ = copies[path.name]
    citations = colab.read_citations(ROOT / "book" / "references.bib")
    cited = [
        key.strip()
        for source in _markdown(master)
        for body in re.findall(r"\{cite\}`([^`]*)`", source)
        for key in body.split(",")
    ]
    text = "\n".join(_markdown(copy))
    assert text.count(f"]({BIBLIOGRAPHY})") == len(cited)
    for key in cited:
        authors, year = citations[key]
        assert re.fullmatch(r"\d{4}", year) and authors and "{" not in authors
        assert f"[{authors}, {year}]({BIBLIOGRAPHY})" in text
    if "long2015fcn" in cited:
        assert f"[Long et al., 2015]({BIBLIOGRAPHY})" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_the_student_versions_and_the_badge_opens_the_copy(copies, path):
    master, copy, _ = copies[path.name]
    student = assignments.student_version(master)  # nbgrader's own preprocessors
    code = [c for c in copy.cells if c.cell_type == "code"]
    masters = [c for c in master.cells if c.cell_type == "code"]
    assert [c.source for c in code] == [c.source for c in student.cells if c.cell_type == "code"]
    stubbed = False
    for mine, theirs in zip(code, masters, strict=True):
        assert mine.id == theirs.id
        assert mine.outputs == theirs.outputs
        # from the first stub on, cells may raise for want of an answer, and say so to nbval
        stubbed = stubbed or "raise NotImplementedError()" in mine.source
        meta = {k: v for k, v in theirs.metadata.items() if k != "nbgrader"}
        if stubbed:
            meta["tags"] = [*meta.get("tags", []), "raises-exception"]
        assert mine.metadata == meta
    assert stubbed == bool(_autograded(master))  # every chapter with a graded task has a stub
    head = "\n".join(_markdown(copy)[:2])
    assert (
        f"colab.research.google.com/github/{OWNER}/{NAME}/blob/colab/notebooks/{path.name}" in head
    )
    assert "/blob/main/" not in head


# --- the converter on a small notebook ---------------------------------------------------------

BOOK = colab.Book(
    url="https://example.org/fcn/",
    repo="o/r",
    citations={"long2015fcn": ("Long et al.", "2015"), "yu2016multi": ("Yu and Koltun", "2016")},
    terms={"lab bench": "term-lab-bench", "adamw": "term-AdamW"},
    labels={"run-times": ("book/setup", "Run times, measured")},
    titles={"book/setup": "Running the chapters"},
)
GRADED = {"grade": False, "grade_id": "ex-double-code", "locked": False, "schema_version": 3,
          "solution": True}  # fmt: skip
TESTS = {"grade": True, "grade_id": "ex-double-test", "locked": True, "points": 2,
         "schema_version": 3, "solution": False}  # fmt: skip
WRITTEN = {"grade": True, "grade_id": "ex-add-answer", "locked": False, "points": 1,
           "schema_version": 3, "solution": True}  # fmt: skip


def _tiny():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    cells = [
        md("# Tiny\n\n[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
           "(https://colab.research.google.com/github/o/r/blob/main/notebooks/01_tiny.ipynb)\n\n"
           "FCNs {cite}`long2015fcn,yu2016multi`, as {cite:t}`long2015fcn` put it, on the\n"
           "{term}`lab bench` and with {term}`AdamW <adamw>`; see {ref}`run-times`,\n"
           "{ref}`the times <run-times>`, {doc}`../book/setup`, {doc}`setup <../book/setup>` "
           "and {ref}`some-label`."),
        code('x = glue("x", 2.5)\nprint(f"x = {x}")\nglue("y", 7)\nz = 1'),
        md("x is {glue:text}`x:.1f`, y is {glue:text}`y:d`, w is {glue:text}`w`.\n\n"
           "(tiny-label)=\n## Boxes\n\n"
           "````{admonition} In {term}`lab bench` terms\n:class: tip\n\n- one\n- two\n````\n\n"
           "```{note}\nA note.\n```\n\n```python\n{cite}`not_a_role` in code\n```"),
        code('w = glue("w", 3)'),
        md("## Exercises\n\n```{exercise} Add\n:label: ex-add\n\nAdd 1 and 1.\n```"),
        md("````{solution} ex-add\n:class: dropdown\n\nIt is 2:\n\n```python\n1 + 1\n```\n````",
           metadata={"nbgrader": WRITTEN}),
        md("```{exercise} Double (autograded)\n:label: ex-double\nWrite `double`.\n```"),
        md("````{solution} ex-double\n:class: dropdown\n\n```python\ndef double(x):\n"
           "    return 2 * x\n```\n````", metadata={"nbgrader": WRITTEN | {"grade_id": "a"}}),
        code("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
             metadata={"nbgrader": GRADED, "tags": ["hide-input"]}),
        code("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(3) == 6\n"
             "### END HIDDEN TESTS", metadata={"nbgrader": TESTS}),
    ]  # fmt: skip
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    return nb


def test_the_converter_on_each_kind_of_markup():
    master = _tiny()
    before = json.dumps(master, sort_keys=True)
    warnings = []
    copy = colab.colab_copy(master, BOOK, "01_tiny.ipynb", warnings)
    assert json.dumps(master, sort_keys=True) == before  # the master is left alone
    assert warnings == []
    bib = "https://example.org/fcn/book/bibliography.html"
    setup = "https://example.org/fcn/book/setup.html"
    glossary = "https://example.org/fcn/book/notation.html"
    assert [c.source for c in copy.cells] == [
        "# Tiny\n\n[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/o/r/blob/colab/notebooks/01_tiny.ipynb)\n\n"
        f"FCNs ([Long et al., 2015]({bib}); [Yu and Koltun, 2016]({bib})), as "
        f"[Long et al.]({bib}) (2015) put it, on the\n"
        f"[lab bench]({glossary}#term-lab-bench) and with [AdamW]({glossary}#term-AdamW); see "
        f"[Run times, measured]({setup}#run-times),\n[the times]({setup}#run-times), "
        f"[Running the chapters]({setup}), [setup]({setup}) and some label.",
        'x = glue("x", 2.5)\nprint(f"x = {x}")\nglue("y", 7)\nz = 1',
        "x is *[`x`, printed above]*, y is *[computed above]*, w is *[`w`, computed below]*.\n\n"
        f"## Boxes\n\n> **In [lab bench]({glossary}#term-lab-bench) terms**\n>\n> - one\n> - two"
        "\n\n> **Note**\n>\n> A note.\n\n```python\n{cite}`not_a_role` in code\n```",
        'w = glue("w", 3)',
        "## Exercises\n\n**Exercise: Add**\n\nAdd 1 and 1.",
        "<details>\n<summary>Solution</summary>\n\nIt is 2:\n\n```python\n1 + 1\n```\n\n"
        "</details>",
        "**Exercise: Double (autograded)**\n\nWrite `double`.",
        "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()",
        "assert double(2) == 4",
    ]  # fmt: skip
    assert all("nbgrader" not in c.metadata for c in copy.cells)
    # the stub and the check after it may raise, and nbval is told so; the tags before stay
    assert copy.cells[7].metadata == {"tags": ["hide-input", "raises-exception"]}
    assert copy.cells[8].metadata == {"tags": ["raises-exception"]}
    assert all("raises-exception" not in c.metadata.get("tags", []) for c in copy.cells[:7])
    assert [c.id for c in copy.cells] == [c.id for i, c in enumerate(master.cells) if i != 7]
    # the code block's text is kept, and it is the one thing the checker objects to
    assert colab.check_copy(copy) == ["cell 2 (markdown): MyST role '{cite}`'"]


def test_the_checker_finds_a_wrong_conversion(monkeypatch):
    master = _tiny()
    master.cells[2].source = "Nothing here but {term}`lab bench`."
    assert colab.check_copy(colab.colab_copy(master, BOOK, "01_tiny.ipynb")) == []
    # a converter that leaves roles and solution markers as they are
    monkeypatch.setattr(colab.Converter, "role", lambda self, match: match.group(0))
    monkeypatch.setattr(colab, "_clear_graded_code", lambda nb: None)
    problems = colab.check_copy(colab.colab_copy(master, BOOK, "01_tiny.ipynb"))
    assert "cell 0 (markdown): MyST role '{cite}`'" in problems
    assert "cell 2 (markdown): MyST role '{term}`'" in problems
    assert "cell 7 (code): 'BEGIN SOLUTION' left" in problems
    assert "cell 8 (code): 'BEGIN HIDDEN TESTS' left" in problems
    # and what a converter must not leave in markdown or metadata, or break in the format
    bad = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("```{exercise} T\n:label: x\n\nText.\n```"),
            nbformat.v4.new_markdown_cell("(a-label)=\n## A heading", metadata={"nbgrader": {}}),
        ]
    )
    bad.cells.append(nbformat.from_dict({"cell_type": "code", "id": "c0de", "source": "1",
                                         "metadata": {}}))  # fmt: skip  # no outputs
    assert colab.check_copy(bad) == [
        "not valid nbformat: 'outputs' is a required property",
        "cell 0 (markdown): directive fence '```{exercise} T'",
        "cell 0 (markdown): option line ':label: x'",
        "cell 1 (markdown): target line '(a-label)='",
        "cell 1 (markdown): nbgrader metadata left",
    ]


def test_citations_and_glossary_anchors(tmp_path):
    bib = tmp_path / "refs.bib"
    bib.write_text(
        "@article{one, author = {Long, Jonathan}, title = {T}, year = {2015}}\n"
        "@article{two, author = {Long, J. and Shelhamer, E.}, title = {T}, year = 2017}\n"
        "@article{three, author = {Hariharan, B. and Arbel{\\'a}ez, P. and Girshick, R.},"
        " title = {T}, year = {2014}}\n"
        "@misc{org, author = {{PASCAL VOC Team}}, title = {T}, year = {2012}}\n"
        "@misc{nobody, title = {The {VOC} Toolkit}}\n",
        encoding="utf-8",
    )
    assert colab.read_citations(bib) == {
        "one": ("Long", "2015"),
        "two": ("Long and Shelhamer", "2017"),
        "three": ("Hariharan et al.", "2014"),
        "org": ("PASCAL VOC Team", "2012"),
        "nobody": ("The VOC Toolkit", "n.d."),
    }
    terms = colab.glossary_terms((ROOT / "book" / "notation.md").read_text(encoding="utf-8"))
    assert terms["lab bench"] == "term-lab-bench"
    assert terms["adamw"] == "term-AdamW"
    assert "glossary" not in terms

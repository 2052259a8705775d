"""Sphinx extension: the public book holds no graded exercise's solution and no hidden test.

The chapters are executed as they are written, solutions included, so every figure and glued
number on a page is the reference run's. What the public book *shows* of a graded exercise is
what a student's copy holds:

- a code cell that nbgrader grades (or that holds its markers) shows the cell as nbgrader's own
  ClearSolutions and ClearHiddenTests leave it: the stub to fill in and the visible tests;
- the worked solution (``{solution}``) of a graded exercise is replaced by a note; the solutions
  of ungraded exercises stay, folded;
- the notebook that the page offers for download (``_sources``) is the student version.

The instructors' edition (``FCN_BOOK=instructor``, ``make book-instructor``) shows everything as
written. Which exercises are graded is read from the notebook itself
(:func:`colab.autograded_exercises`), so a new graded exercise needs no change here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
from colab import autograded_exercises, cleared_sources
from docutils import nodes
from sphinx.application import Sphinx

EDITIONS = ("public", "instructor")
SOLUTION_OF = re.compile(
    r"^ {0,3}(?P<fence>`{3,}|:{3,})[ \t]*\{solution\}[ \t]+(?P<label>\S+)", re.M
)
GRADED_NOTE = (
    "This exercise is graded, so its solution is not shown here. Instructors find it in the "
    "instructors' edition of the book (see the instructors' guide)."
)


def edition(app: Sphinx) -> str:
    value = app.config.fcn_book_edition
    if value not in EDITIONS:
        raise ValueError(
            f"FCN_BOOK={value!r}: expected one of {', '.join(EDITIONS)} (public: what is "
            "published, without graded solutions; instructor: everything)"
        )
    return value


def _notebook(app: Sphinx, docname: str) -> nbformat.NotebookNode | None:
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".ipynb":
        return None
    return nbformat.read(path, as_version=4)


def hide_graded(app: Sphinx, doctree: nodes.document) -> None:
    """On each chapter's doctree, right after it is read (and its notebook executed)."""
    if edition(app) != "public":
        return
    nb = _notebook(app, app.env.docname)
    if nb is None:
        return
    student = cleared_sources(nb)
    for cell in doctree.findall(nodes.container):
        if cell.get("nb_element") != "cell_code" or cell.get("cell_index") not in student:
            continue
        for block in cell.findall(nodes.literal_block):
            if block.parent.get("nb_element") == "cell_code_source":
                text = student[cell["cell_index"]]
                block.rawsource = text
                block.children = [nodes.Text(text)]
    graded = autograded_exercises(nb)
    if graded:
        from sphinx_exercise.nodes import solution_node

        for solution in doctree.findall(solution_node):
            if solution.get("target_label") in graded:
                body = nodes.section(ids=["solution-content"])
                body += nodes.paragraph(text=GRADED_NOTE)
                solution.children = [child for child in solution.children[:1]] + [body]


def student_sources(app: Sphinx, exception: Exception | None) -> None:
    """The chapters offered for download are the student versions."""
    if exception is not None or edition(app) != "public" or app.builder.format != "html":
        return
    for docname in sorted(app.env.found_docs):
        nb = _notebook(app, docname)
        name = f"{docname}.ipynb"
        suffix = app.config.html_sourcelink_suffix  # "" in Jupyter Book, ".txt" in Sphinx
        target = Path(app.outdir) / "_sources" / (name + ("" if name.endswith(suffix) else suffix))
        if nb is None or not target.exists():
            continue
        nbformat.write(student_notebook(nb), target)


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` as the public book shows it: graded code cells as nbgrader hands them out, the
    ``{solution}`` of an autograded exercise replaced by the note. A new notebook."""
    nb = nbformat.from_dict(nb)  # a deep copy
    for index, source in cleared_sources(nb).items():
        nb.cells[index].source = source
    graded = autograded_exercises(nb)
    for cell in nb.cells:
        found = SOLUTION_OF.search(cell.source) if cell.cell_type == "markdown" else None
        if found and found["label"] in graded:
            fence = found["fence"]
            cell.source = f"{fence}{{solution}} {found['label']}\n\n{GRADED_NOTE}\n{fence}"
    return nb


def setup(app: Sphinx) -> dict:
    app.add_config_value("fcn_book_edition", os.environ.get("FCN_BOOK", "public"), "env")
    app.connect("doctree-read", hide_graded)
    app.connect("build-finished", student_sources)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Copies of the chapters that read like the book in Colab and plain JupyterLab.

The chapters are written in MyST, which only the book's build understands: outside it, roles
such as ``{cite}`key``` and fences such as ````` ```{exercise} ````` show as raw text, and every
solution is in plain view. This step writes, for every chapter ``notebooks/NN_*.ipynb`` (and
``notebooks/paper_at_a_glance.ipynb``), a copy in plain Markdown under the same file name:

    python book/colab.py                   # every chapter -> _build/colab/notebooks/
    python book/colab.py 02 05 --out DIR   # chosen chapters, another folder

What changes in a copy, and only in its markdown cells unless said otherwise:

- ``{cite}`a,b``` becomes "(Long et al., 2015; Shelhamer et al., 2017)": author and year from
  book/references.bib, as the book prints them (one author: "Long"; two: "Long and
  Shelhamer"; more: "Long et al."), each a link to the book's bibliography page.
  ``{cite:t}`` gives "Long et al. (2015)".
- ``{term}`word``` becomes the word, linked to its entry in the glossary (book/notation.md).
  ``{ref}`label``` and ``{doc}`path``` become their link text (the given one, else the title of
  the section or page) linked to the book's page; a label defined nowhere (labels are the
  ``(label)=`` lines of book/*.md and of the chapters) leaves the text, or the label in words.
  The ``(label)=`` lines themselves are dropped.
- Admonitions (``{admonition} Title``, ``{note}``, ``{tip}``, ``{warning}``, ...) become a
  block quote whose first line is the title in bold; one with ``:class: dropdown`` becomes a
  folded ``<details>`` block. Option lines (``:class:``, ``:label:``, ...) are dropped.
- ``{exercise} Title`` becomes "**Exercise: Title**" followed by its text.
- ``{solution}`` of an exercise that is not autograded (a written answer, which the book shows
  folded) becomes a ``<details><summary>Solution</summary> ... </details>`` block, folded as in the
  book. An exercise is *autograded* when one of its code cells (those after the exercise, up to the
  next exercise or heading) carries nbgrader metadata or ``### BEGIN SOLUTION`` / ``### BEGIN HIDDEN
  TESTS`` markers: its ``{solution}`` is removed (a markdown cell left empty goes), as in the public
  book (book/public_book.py), and its code cells are handed out as in the student versions
  (book/assignments.py) by nbgrader's own preprocessors: ``ClearSolutions`` puts the stub ``raise
  NotImplementedError()`` in place of the solution and ``ClearHiddenTests`` drops the hidden tests,
  so a "run all" stops at the first such exercise, at the end of its chapter. That stub and every
  code cell after it (the checks, and cells that use the answer) carry the ``raises-exception`` tag,
  so that nbval and nbclient run a copy to its end as they run the chapter: the tag is invisible to
  readers. The ``nbgrader`` cell metadata is dropped from every cell: a copy is for reading and
  running, not an nbgrader source.
- ``{glue:text}`key:fmt``` quotes a number that only the book's build knows. The copy says
  where the reader finds it, after the code cell that glues ``key`` (``glue("key", ...)``) has
  run: "*[`name`, printed above]*" (or "below", where that cell comes after the text) when that
  cell shows the value -- the ``glue`` call sits inside a ``print(...)``, or its result is
  assigned to a name that a ``print(...)`` of the same cell uses, or it is the cell's last
  expression -- and "*[`name`, computed above]*" (or "below") otherwise: such a number is
  computed in that cell and mostly shown there in a printed table or a figure, or set among the
  chapter's parameters. ``name`` is the variable that holds the value once the cell has run (the
  one the ``glue`` call's result is assigned to, or the one it glues), so that the reader can
  also evaluate it; the placeholder leaves it out where no variable holds the value.
- The "Open In Colab" badge points at the copy: ``notebooks/NAME.ipynb`` on the repository's
  ``colab`` branch. The book's workflow (.github/workflows/book.yml) runs this step after the
  build on every push to ``main`` and force-pushes the folder to that branch, because Colab
  opens notebooks from GitHub (or Drive), not from the published website.

Code cells (sources, outputs, metadata other than nbgrader's) are copied unchanged apart from the
autograded exercises above; each copy is checked (:func:`check_copy`, nbformat's validation
included) and the command fails if one is not clean.
"""

from __future__ import annotations

import argparse
import ast
import posixpath
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "_build" / "colab" / "notebooks"
BRANCH = "colab"  # where the copies are published; their Colab badges point there

ROLE = re.compile(r"\{(?P<name>[\w:.+-]+)\}`(?P<body>[^`]*)`")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})[ \t]*(?P<info>.*?)\s*$")
DIRECTIVE = re.compile(r"^\{(?P<name>[^}\s]+)\}\s*(?P<args>.*)$")
OPTION = re.compile(r"^\s*:(?P<key>[\w-]+):(?:\s+(?P<value>.*))?\s*$")
TARGET = re.compile(r"^\((?P<label>[^()\s]+)\)=\s*$")
TITLED = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^\s)\"']+?\.ipynb")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")

# The directives the book's admonitions use, with the title the book shows for them.
ADMONITIONS = {
    name: name.capitalize()
    for name in (
        "attention", "caution", "danger", "error", "hint", "important", "note", "tip", "warning"
    )
} | {"seealso": "See also"}  # fmt: skip


@dataclass
class Book:
    """What a copy links to: the published book and what its pages define."""

    url: str  # the published book, ending in "/"
    repo: str  # "owner/name" on GitHub, for the Colab badges
    branch: str = BRANCH
    citations: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (authors, year)
    terms: dict[str, str] = field(default_factory=dict)  # glossary term, lower case -> anchor
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (page, title)
    titles: dict[str, str] = field(default_factory=dict)  # page ("book/setup") -> its title
    bibliography: str = "book/bibliography"
    glossary: str = "book/notation"

    def page_url(self, page: str, anchor: str = "") -> str:
        return f"{self.url}{page}.html" + (f"#{anchor}" if anchor else "")

    @classmethod
    def from_project(cls, root: Path = ROOT, url: str | None = None, branch: str = BRANCH) -> Book:
        """The book in ``root``: its URL (``html.baseurl`` in _config.yml, else the GitHub Pages
        address of ``repository.url``), references.bib, the glossary and every label."""
        config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
        repo_url = config["repository"]["url"].rstrip("/")
        repo = repo_url.removeprefix("https://github.com/")
        owner, name = repo.split("/")
        url = (
            url or (config.get("html") or {}).get("baseurl") or f"https://{owner}.github.io/{name}/"
        )
        book = cls(url=url.rstrip("/") + "/", repo=repo, branch=branch)
        for bib in config.get("bibtex_bibfiles", []):
            book.citations.update(read_citations(root / bib))
        pages = {p.relative_to(root).with_suffix("").as_posix(): p for p in _pages(root)}
        for page, path in pages.items():
            text = _page_markdown(path)
            book.titles[page] = _first_heading(text) or page.rsplit("/", 1)[-1]
            for label, title in _targets(text):
                book.labels[label] = (page, title)
        book.terms = glossary_terms(pages[book.glossary].read_text(encoding="utf-8"))
        return book


def _pages(root: Path) -> list[Path]:
    return sorted((root / "book").glob("*.md")) + sorted((root / "notebooks").glob("*.ipynb"))


def _page_markdown(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return path.read_text(encoding="utf-8")


def _first_heading(text: str) -> str | None:
    match = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)
    return match.group(1) if match else None


def _targets(text: str) -> list[tuple[str, str]]:
    """``(label)=`` lines and the title of the heading each one stands before."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        match = TARGET.match(line)
        if match:
            after = next((x for x in lines[i + 1 :] if x.strip()), "")
            found.append((match["label"], _first_heading(after) or match["label"]))
    return found


def read_citations(path: Path) -> dict[str, tuple[str, str]]:
    """Key -> (authors, year) from a .bib file, the authors as the book's author-year style
    prints them: "Long", "Long and Shelhamer", "Long et al."."""
    from pybtex.database import parse_file
    from pybtex.richtext import Text

    def plain(latex: str) -> str:
        return Text.from_latex(latex).render_as("text")

    found = {}
    for key, entry in parse_file(str(path)).entries.items():
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
        if not names:
            authors = plain(entry.fields.get("title", key))
        elif len(names) == 1:
            authors = names[0]
        elif len(names) == 2:
            authors = f"{names[0]} and {names[1]}"
        else:
            authors = f"{names[0]} et al."
        found[key] = (authors, plain(entry.fields.get("year", "n.d.")))
    return found


def glossary_terms(markdown: str) -> dict[str, str]:
    """Term (lower case) -> its anchor on the page, for every term of the ``{glossary}`` block
    in ``markdown``: terms are its unindented lines, anchors Sphinx's ``term-`` ids."""
    from sphinx.util.nodes import _make_id  # the ids Sphinx gives glossary terms

    terms = {}
    inside = False
    for line in markdown.splitlines():
        fence = FENCE.match(line)
        if fence and not inside and fence["info"].startswith("{glossary}"):
            inside = True
        elif fence and inside and not fence["info"]:
            inside = False
        elif inside and line.strip() and not line[0].isspace() and not OPTION.match(line):
            text = line.strip().replace("`", "")
            terms[text.lower()] = _make_id(f"term-{text}")
    return terms


# --- where a glued number is shown -------------------------------------------------------------


def _is_call(node: ast.AST, name: str) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == name) or (
        isinstance(func, ast.Attribute) and func.attr == name
    )


def _python(source: str) -> ast.Module | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:  # magics (%pip ...) become Python first
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None


def glued_keys(source: str) -> dict[str, tuple[bool, str | None]]:
    """The keys a code cell glues (``glue("key", value)``), each with whether the cell shows its
    value -- the call inside a ``print``, its result assigned to a name a ``print`` of the cell
    uses, or the cell's last expression -- and the Python name that holds the value after the
    cell has run, if one does (the name the call's result is assigned to, else a plain name
    passed as the value), or None."""
    tree = _python(source)
    if tree is None:
        return {}
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    printed = {
        name.id
        for call in ast.walk(tree)
        if _is_call(call, "print")
        for name in ast.walk(call)
        if isinstance(name, ast.Name)
    }
    found: dict[str, tuple[bool, str | None]] = {}
    for call in ast.walk(tree):
        if not (_is_call(call, "glue") and call.args and isinstance(call.args[0], ast.Constant)):
            continue
        value = call.args[1] if len(call.args) > 1 else None
        holder = value.id if isinstance(value, ast.Name) else None
        shown, node = False, call
        while node in parents:
            node = parents[node]
            if _is_call(node, "print"):
                shown = True
                break
            if isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                shown = any(name in printed for name in names)
                holder = names[0] if names and node.value is call else holder
                break
            if isinstance(node, ast.stmt):
                shown = isinstance(node, ast.Expr) and node is tree.body[-1]
                break
        key = str(call.args[0].value)
        was_shown, was_held = found.get(key, (False, None))
        found[key] = (was_shown or shown, was_held or holder)
    return found


def glue_sites(nb: nbformat.NotebookNode) -> dict[str, tuple[int, bool, str | None]]:
    """Key -> (index of the first code cell that glues it, whether that cell shows it, the name
    that holds it; see :func:`glued_keys`)."""
    sites: dict[str, tuple[int, bool, str | None]] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for key, (shown, holder) in glued_keys(cell.source).items():
                sites.setdefault(key, (index, shown, holder))
    return sites


def glue_placeholder(shown: bool, above: bool, holder: str | None = None) -> str:
    where = f"{'printed' if shown else 'computed'} {'above' if above else 'below'}"
    return f"*[`{holder}`, {where}]*" if holder else f"*[{where}]*"


# --- exercises ---------------------------------------------------------------------------------


def _exercise_labels(markdown: str) -> list[str]:
    """The ``:label:`` of each ``{exercise}`` in ``markdown`` ("" where it has none)."""
    labels, options = [], False
    for line in markdown.splitlines():
        fence = FENCE.match(line)
        option = OPTION.match(line)
        if fence and fence["info"].startswith("{exercise}"):
            labels.append("")
            options = True
        elif options and option:
            if option["key"] == "label":
                labels[-1] = (option["value"] or "").strip()
        else:
            options = False
    return labels


def _is_nbgrader_code(cell: nbformat.NotebookNode) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and (
        bool(meta.get("solution") or meta.get("grade"))
        or any(marker in cell.source for marker in MARKERS)
    )


def autograded_exercises(nb: nbformat.NotebookNode) -> set[str]:
    """Labels of the exercises with nbgrader code cells among the cells after them (up to the
    next exercise or heading)."""
    graded: set[str] = set()
    current: str | None = None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            labels = _exercise_labels(cell.source)
            if labels:
                current = labels[-1]
            elif re.search(r"^#{1,6}\s", cell.source, re.M):
                current = None
        elif current is not None and _is_nbgrader_code(cell):
            graded.add(current)
    return graded


# --- markdown ----------------------------------------------------------------------------------


def convert_blocks(
    markdown: str,
    directive: Callable[[str, str, dict, str], str],
    text: Callable[[str], str] = lambda chunk: chunk,
) -> str:
    """Rewrite each top-level MyST directive of ``markdown`` with ``directive(name, args,
    options, body)`` and each run of lines outside directives and code blocks with
    ``text(chunk)``; code blocks are kept as they are."""
    lines = markdown.split("\n")
    out: list[str] = []
    chunk: list[str] = []

    def flush() -> None:
        if chunk:
            out.append(text("\n".join(chunk)))
            chunk.clear()

    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence or (fence["fence"][0] == ":" and not fence["info"].startswith("{")):
            chunk.append(lines[i])
            i += 1
            continue
        flush()
        mark = fence["fence"]
        close = re.compile(rf"^ {{0,3}}{re.escape(mark[0])}{{{len(mark)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
        head = DIRECTIVE.match(fence["info"])
        if head is None:  # a code block: as it is
            out.append("\n".join(lines[i : end + 1]))
        else:
            body, options = lines[i + 1 : end], {}
            if body and body[0].strip() == "---":  # options as a YAML block
                stop = next((k for k in range(1, len(body)) if body[k].strip() == "---"), 0)
                if stop:
                    options = yaml.safe_load("\n".join(body[1:stop])) or {}
                    body = body[stop + 1 :]
            else:
                while body and OPTION.match(body[0]):
                    option = OPTION.match(body[0])
                    options[option["key"]] = (option["value"] or "").strip()
                    body = body[1:]
            out.append(directive(head["name"], head["args"], options, "\n".join(body).strip("\n")))
        i = end + 1
    flush()
    return "\n".join(out)


def _quote(markdown: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in markdown.split("\n"))


def _details(summary: str, markdown: str) -> str:
    # Blank lines around the body: Jupyter and Colab render Markdown inside HTML blocks only then.
    return f"<details>\n<summary>{summary}</summary>\n\n{markdown}\n\n</details>"


def _words(label: str) -> str:
    return re.sub(r"[-_]+", " ", label).strip()


@dataclass
class Converter:
    """Turns one notebook's markdown into plain Markdown (see the module's docstring)."""

    book: Book
    page: str  # this notebook's page, e.g. "notebooks/05_skip_fusion"
    glue: dict[str, tuple[int, bool]] = field(default_factory=dict)
    graded: set[str] = field(default_factory=set)
    cell: int = 0  # index of the markdown cell being converted
    warnings: list[str] = field(default_factory=list)

    def markdown(self, source: str) -> str:
        converted = convert_blocks(source, self.directive, self.text)
        return re.sub(r"\n{3,}", "\n\n", converted).strip("\n")

    # roles and target lines, outside code blocks
    def text(self, chunk: str) -> str:
        chunk = "\n".join(line for line in chunk.split("\n") if not TARGET.match(line))
        return ROLE.sub(self.role, chunk)

    def role(self, match: re.Match) -> str:
        name, body = match["name"], match["body"]
        kind, _, variant = name.partition(":")
        if kind == "cite":
            return self.cite(body, variant)
        if kind == "glue":
            return self.glued(body.split(":")[0].strip())
        titled = TITLED.match(body)
        label, target = (titled["text"], titled["target"]) if titled else ("", body)
        target = target.strip()
        if name == "term":
            anchor = self.book.terms.get(target.lower())
            url = self.book.page_url(self.book.glossary, anchor or "notation-glossary")
            return f"[{label or target}]({url})"
        if name in ("ref", "numref"):
            if target in self.book.labels:
                page, title = self.book.labels[target]
                return f"[{label or title}]({self.book.page_url(page, target)})"
            return label or _words(target)
        if name == "doc":
            page = posixpath.normpath(
                target.lstrip("/") if target.startswith("/") else
                posixpath.join(posixpath.dirname(self.page), target)
            ).removesuffix(".md").removesuffix(".ipynb")  # fmt: skip
            if page in self.book.titles:
                return f"[{label or self.book.titles[page]}]({self.book.page_url(page)})"
            return label or _words(target.rsplit("/", 1)[-1])
        if name == "math":
            return f"${body}$"
        if name in ("sub", "sup"):
            return f"<{name}>{body}</{name}>"
        if name == "abbr":
            return re.sub(r"\s*\([^)]*\)\s*$", "", body)
        self.warnings.append(f"cell {self.cell}: role {{{name}}} left as its text")
        return body

    def cite(self, body: str, variant: str) -> str:
        url = self.book.page_url(self.book.bibliography)
        parts = []
        for key in (k.strip() for k in body.split(",") if k.strip()):
            if key not in self.book.citations:
                raise KeyError(f"{self.page}, cell {self.cell}: {key!r} is not in the bibliography")
            authors, year = self.book.citations[key]
            if variant in ("t", "ts"):
                parts.append(f"[{authors}]({url}) ({year})")
            elif variant == "author":
                parts.append(f"[{authors}]({url})")
            elif variant == "year":
                parts.append(f"[{year}]({url})")
            else:
                parts.append(f"[{authors}, {year}]({url})")
        if variant in ("", "p", "ps"):
            return "(" + "; ".join(parts) + ")"
        return ", ".join(parts)

    def glued(self, key: str) -> str:
        if key not in self.glue:
            raise KeyError(f"{self.page}, cell {self.cell}: no code cell glues {key!r}")
        index, shown, holder = self.glue[key]
        return glue_placeholder(shown, above=index < self.cell, holder=holder)

    def directive(self, name: str, args: str, options: dict, body: str) -> str:
        inner = self.markdown(body)
        if name == "exercise":
            return f"**Exercise: {args}**\n\n{inner}" if args else f"**Exercise**\n\n{inner}"
        if name == "solution":
            return "" if args.strip() in self.graded else _details("Solution", inner)
        if name == "admonition" or name in ADMONITIONS:
            title = args if name == "admonition" else ADMONITIONS[name]
            if name != "admonition" and args:
                inner = f"{self.text(args)}\n\n{inner}".strip("\n")
            title = self.text(title)
            if "dropdown" in str(options.get("class", "")).split():
                return _details(f"<b>{title}</b>" if title else "Details", inner)
            return _quote(f"**{title}**\n\n{inner}" if title else inner)
        if name == "dropdown":
            return _details(self.text(args) or "Details", inner)
        if name == "math":
            return f"$$\n{body}\n$$"
        if name in ("code", "code-block", "sourcecode"):
            return f"```{args}\n{body}\n```"
        self.warnings.append(f"cell {self.cell}: directive {{{name}}} shown as a quote")
        head = f"**{self.text(args)}**\n\n" if args else ""
        return _quote(f"{head}{inner}")


# --- notebooks ---------------------------------------------------------------------------------


STUB = "raise NotImplementedError()"  # what ClearSolutions leaves in place of a code solution


def cleared_sources(nb: nbformat.NotebookNode) -> dict[int, str]:
    """The student's version of every code cell that nbgrader grades or that holds its markers,
    by cell index: nbgrader's own ClearSolutions and ClearHiddenTests, as for student versions.
    The notebook is not changed."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    indices = [i for i, cell in enumerate(nb.cells) if _is_nbgrader_code(cell)]
    if not indices:
        return {}
    cells = [nbformat.from_dict(nb.cells[i]) for i in indices]  # copies
    scratch = nbformat.v4.new_notebook(metadata=nb.metadata, cells=cells)
    resources: dict = {}
    for step in (ClearSolutions, ClearHiddenTests):
        scratch, resources = step().preprocess(scratch, resources)
    return {i: cell.source for i, cell in zip(indices, scratch.cells, strict=True)}


def _clear_graded_code(nb: nbformat.NotebookNode) -> None:
    """nbgrader's ClearSolutions and ClearHiddenTests on the code cells that nbgrader grades or
    that hold its markers; the markdown cells are left to the converter."""
    for index, source in cleared_sources(nb).items():
        nb.cells[index].source = source
    stubbed = False  # from the first stub on, a cell may fail for want of the learner's answer
    for cell in nb.cells:
        stubbed = stubbed or (cell.cell_type == "code" and STUB in cell.source)
        tags = cell.metadata.get("tags", [])
        if stubbed and cell.cell_type == "code" and "raises-exception" not in tags:
            cell.metadata["tags"] = [*tags, "raises-exception"]


def colab_copy(
    master: nbformat.NotebookNode, book: Book, name: str, warnings: list[str] | None = None
) -> nbformat.NotebookNode:
    """The copy of the chapter ``name`` (its file name, e.g. "05_skip_fusion.ipynb") for Colab
    and plain Jupyter; a new notebook, the master is not changed."""
    nb = nbformat.from_dict(master)  # a deep copy
    converter = Converter(
        book,
        page=f"notebooks/{Path(name).stem}",
        glue=glue_sites(nb),
        graded=autograded_exercises(nb),
    )
    badge = (
        f"https://colab.research.google.com/github/{book.repo}/blob/{book.branch}/notebooks/{name}"
    )
    _clear_graded_code(nb)
    cells = []
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "markdown":
            converter.cell = index
            cell.source = BADGE.sub(badge, converter.markdown(cell.source))
            if not cell.source.strip():
                continue
        cells.append(cell)
    nb.cells = cells
    if warnings is not None:
        warnings += [f"{name}: {w}" for w in converter.warnings]
    return nb


def check_copy(nb: nbformat.NotebookNode) -> list[str]:
    """What a copy must not hold: MyST roles, directive fences, option or target lines in
    markdown; nbgrader's markers or metadata anywhere; and it must be valid nbformat 4."""
    problems = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as error:
        problems.append(f"not valid nbformat: {error.message}")
    if nb.nbformat != 4:
        problems.append(f"nbformat {nb.nbformat}, not 4")
    for index, cell in enumerate(nb.cells):
        where = f"cell {index} ({cell.cell_type})"
        if cell.cell_type == "markdown":
            for match in re.finditer(r"\{[\w:.+-]+\}`", cell.source):
                problems.append(f"{where}: MyST role {match.group(0)!r}")
            for line in cell.source.split("\n"):
                if re.match(r"^\s*(`{3,}|~{3,}|:{3,})\s*\{", line):
                    problems.append(f"{where}: directive fence {line.strip()!r}")
                elif OPTION.match(line):
                    problems.append(f"{where}: option line {line.strip()!r}")
                elif TARGET.match(line.strip()):
                    problems.append(f"{where}: target line {line.strip()!r}")
        problems += [f"{where}: {m!r} left" for m in MARKERS if m in cell.source]
        if "nbgrader" in cell.get("metadata", {}):
            problems.append(f"{where}: nbgrader metadata left")
    return problems


def notebook_paths(root: Path = ROOT, selection: list[str] | None = None) -> list[Path]:
    """The chapters (``notebooks/NN_*.ipynb``) and ``paper_at_a_glance.ipynb`` if present; with
    ``selection``, those whose number prefix ("05", "5") or name is given."""
    every = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    every += [p for p in [root / "notebooks" / "paper_at_a_glance.ipynb"] if p.exists()]
    if not selection:
        return every
    chosen = []
    for item in selection:
        key = item.removesuffix(".ipynb")
        match = [p for p in every if key in (p.stem, p.stem.split("_")[0].lstrip("0") or "0")]
        match = match or [p for p in every if p.stem.split("_")[0] == key.zfill(2)]
        if not match:
            raise SystemExit(f"no notebook {item!r}; they are: {', '.join(p.stem for p in every)}")
        chosen += match
    return chosen


def build(
    out: Path = DEFAULT_OUT,
    selection: list[str] | None = None,
    book: Book | None = None,
    root: Path = ROOT,
) -> dict[Path, list[str]]:
    """Write the copies into ``out``; each written file -> the problems :func:`check_copy`
    found in it (none, if all is well)."""
    book = book or Book.from_project(root)
    out.mkdir(parents=True, exist_ok=True)
    found = {}
    for path in notebook_paths(root, selection):
        warnings: list[str] = []
        copy = colab_copy(nbformat.read(path, as_version=4), book, path.name, warnings)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        nbformat.write(copy, out / path.name)
        found[out / path.name] = check_copy(copy)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter numbers or names (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--book-url", help="the published book (default: from _config.yml)")
    parser.add_argument("--branch", default=BRANCH, help="branch the badges point at")
    args = parser.parse_args(argv)
    book = Book.from_project(ROOT, url=args.book_url, branch=args.branch)
    status = 0
    for path, problems in build(args.out, args.chapters, book).items():
        print(f"{path}: {'ok' if not problems else f'{len(problems)} problems'}")
        for problem in problems:
            print(f"  {problem}")
        status = status or int(bool(problems))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

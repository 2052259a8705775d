"""fcnlib's layout rules, checked on its source: each rule is one a reader relies on.

- data never imports presentation: :mod:`fcnlib.data` reads and writes datasets without
  knowing how figures or the command line show them;
- no private name (``_x``) is imported from another module;
- no circle among the modules' top-level imports (imports inside functions are lazy, on purpose);
- no function longer than about 100 lines (its docstring not counted), unless its docstring
  says why (``Long because``).
"""

import ast
import re
from pathlib import Path

import pytest

import fcnlib

ROOT = Path(fcnlib.__file__).parent
PRESENTATION = ("fcnlib.viz", "fcnlib.cli", "fcnlib.book", "fcnlib.bench", "fcnlib.progress")
MAX_LINES = 100


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


MODULES = _modules()


def _imports(tree: ast.Module, *, top_level_only: bool) -> list[tuple[str, list[str]]]:
    """(module imported, names) for each fcnlib import; top level: not inside a function."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if top_level_only and isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fcnlib"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("fcnlib")]
    return found


def _resolve(module: str, names: list[str]) -> set[str]:
    """The fcnlib modules an import loads: ``from fcnlib.data import voc`` loads fcnlib.data.voc."""
    loaded = {module}
    loaded |= {f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES}
    return loaded


def test_the_rules_see_every_module():
    assert {"fcnlib", "fcnlib.data", "fcnlib.data.voc", "fcnlib.models", "fcnlib.viz"} <= set(
        MODULES
    )


def _data_to_presentation() -> list:
    return [
        (name, module)
        for name, tree in MODULES.items()
        if name.startswith("fcnlib.data")
        for module, names in _imports(tree, top_level_only=False)
        for loaded in _resolve(module, names)
        if loaded.startswith(PRESENTATION) or loaded == "fcnlib.infer"
    ]


def test_data_imports_no_presentation():
    assert not _data_to_presentation()


def test_no_private_name_crosses_a_module_border():
    crossing = [
        (name, module, imported)
        for name, tree in MODULES.items()
        for module, names in _imports(tree, top_level_only=False)
        for imported in names
        if imported.startswith("_") and module != name
    ]
    assert not crossing


def _private_attributes() -> list[str]:
    """``from fcnlib import receptive_field as rf`` then ``rf._x``: a private name crossing."""
    crossing = []
    for name, tree in MODULES.items():
        aliases = {}  # local name -> fcnlib module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fcnlib"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in MODULES and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and aliases[node.value.id] != name
            ):
                crossing.append(f"{name}: {node.value.id}.{node.attr}")
    return crossing


def test_no_private_attribute_of_another_module():
    assert not _private_attributes()


@pytest.mark.parametrize(
    "source, check",
    [
        ("from fcnlib import receptive_field as rf\nrf._branches(None)\n", _private_attributes),
        ("def f():\n    from fcnlib.viz import colorize\n", _data_to_presentation),
    ],
)
def test_the_import_rules_can_fail(monkeypatch, source, check):
    monkeypatch.setitem(MODULES, "fcnlib.data.bad", ast.parse(source))
    assert any("fcnlib.data.bad" in str(found) for found in check())


def test_no_import_circle():
    graph = {
        name: {
            loaded
            for module, names in _imports(tree, top_level_only=True)
            for loaded in _resolve(module, names)
            if loaded != name and loaded in MODULES
        }
        for name, tree in MODULES.items()
    }
    # a package's __init__ may import its own submodules (re-exports); the rule is about peers
    done, on_path, circles = set(), [], []

    def visit(node: str) -> None:
        if node in on_path:
            circles.append([*on_path[on_path.index(node) :], node])
            return
        if node in done:
            return
        on_path.append(node)
        for nxt in sorted(graph[node]):
            if not (nxt.startswith(node + ".") or node.startswith(nxt + ".")):
                visit(nxt)
        on_path.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)
    assert not circles


def _long_functions() -> list[str]:
    found = []
    for name, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if doc:  # the docstring is reading, not code to follow
                    first = node.body[0]
                    lines -= first.end_lineno - first.lineno + 1
                if lines > MAX_LINES and "Long because" not in doc:
                    found.append(f"{name}.{node.name}: {lines} lines")
    return found


def test_no_function_over_100_lines_without_a_reason():
    assert not _long_functions()


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f():\n" + "    x = 1\n" * 120, ["m.f: 121 lines"]),
        ('def f():\n    """Long because: one table."""\n' + "    x = 1\n" * 120, []),
        ('def f():\n    """Doc\n' + "    line\n" * 50 + '    """\n' + "    x = 1\n" * 60, []),
    ],
)
def test_the_length_rule_can_fail(monkeypatch, source, expected):
    monkeypatch.setitem(MODULES, "m", ast.parse(source))
    assert [f for f in _long_functions() if f.startswith("m.")] == expected


def test_every_module_is_on_the_readers_maps():
    """README's layout and the packages' docstrings name every public module, one line each."""
    readme = (ROOT.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout") : readme.index("## Chapters")]
    public = [n for n in MODULES if n != "fcnlib" and not n.rsplit(".", 1)[1].startswith("_")]
    docs = {p: ast.get_docstring(MODULES[p]) or "" for p in ("fcnlib", "fcnlib.data")}
    missing = []
    for name in public:
        package, short = name.rsplit(".", 1)
        if f":mod:`{name}`" not in docs[package]:
            missing.append(f"{name} (docstring of {package})")
        if not re.search(rf"(?<![\w.]){short}(\.py|/)?(?![\w])", layout):
            missing.append(f"{name} (README's layout)")
    assert not missing

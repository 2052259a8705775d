"""Check that every internal link of the built book points at something that exists.

Usage: ``python book/check_links.py _build/html`` (``make book`` runs it after building).

An internal link is any ``href``/``src`` without a scheme (``https:``, ``mailto:``...): a relative
path, optionally with a ``#fragment``. The target file must exist, and a fragment must name an
``id`` (or ``<a name>``) in the target page. External links are not followed: the book builds
offline. Files under ``_static/`` are the theme's assets (some are unrendered templates) and are
not pages. Exits with status 1 and one line per broken link, else prints a summary.
"""

from __future__ import annotations

import sys
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if values.get(key):
                self.ids.add(values[key])
        for key in ("href", "src"):
            if values.get(key) and not (tag == "link" and values.get("rel") == "preconnect"):
                self.links.append(values[key])


@cache
def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def broken_links(root: Path) -> tuple[list[str], int]:
    """(problems, number of internal links checked) for the HTML tree under ``root``."""
    problems, checked = [], 0
    for page_path in sorted(root.rglob("*.html")):
        if page_path.relative_to(root).parts[0] == "_static":
            continue  # the theme's assets, including unrendered template snippets
        for link in _parse(page_path).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("data:", "javascript:")):
                continue  # external: not followed offline
            checked += 1
            target = page_path if not parts.path else (page_path.parent / unquote(parts.path))
            if target.is_dir():
                target = target / "index.html"
            where = f"{page_path.relative_to(root)}: {link}"
            if not target.exists():
                problems.append(f"{where} -> missing file {target.resolve()}")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in _parse(target.resolve()).ids:
                    problems.append(f"{where} -> no element with id {parts.fragment!r}")
    return problems, checked


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python book/check_links.py BUILT_HTML_DIR (e.g. _build/html)")
        return 2
    problems, checked = broken_links(Path(argv[0]))
    for line in problems:
        print(line)
    print(f"{checked} internal links checked, {len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

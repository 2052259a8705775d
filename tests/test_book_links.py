"""The built book's internal-link checker (book/check_links.py) finds what is broken."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_links", ROOT / "book" / "check_links.py")
check_links = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_links)


def _write(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")


def test_good_and_broken_internal_links(tmp_path):
    _write(tmp_path / "index.html", '<a href="ch/one.html#sec">ok</a> <a href="#top">self</a>'
           '<h1 id="top">t</h1> <a href="https://example.org/x">external</a>'
           '<img src="img/fig.png"> <a href="ch/">directory</a>')  # fmt: skip
    chapter = (
        '<section id="sec"></section><a href="../index.html">up</a>'
        '<a href="two.html">gone</a> <a href="../index.html#nowhere">bad anchor</a>'
    )
    _write(tmp_path / "ch" / "one.html", chapter)
    _write(tmp_path / "ch" / "index.html", "")
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "fig.png").write_bytes(b"")
    _write(tmp_path / "_static" / "macros.html", '<a href="{{ pathto(x) }}">template</a>')
    problems, checked = check_links.broken_links(tmp_path)
    assert checked == 7  # the external link and the theme's _static files are not checked
    assert len(problems) == 2
    assert any("two.html" in p and "missing file" in p for p in problems)
    assert any("'nowhere'" in p for p in problems)
    assert check_links.main([str(tmp_path)]) == 1
    _write(tmp_path / "ch" / "one.html", '<p id="sec"></p><a href="../index.html#top">fixed</a>')
    check_links._parse.cache_clear()
    assert check_links.broken_links(tmp_path)[0] == []
    assert check_links.main([str(tmp_path / "absent")]) == 2

"""Sphinx extension: the book's live pages (``book/live.md``) get the nets the chapters trained.

The scene bank that the live pages load (``book/_static/live/models/``: the nets as ONNX, the
scenes, the explorers' data) is written by the chapter that trains the nets, when it runs
(``fcnlib.export.write_live_assets``), and copied with the other static files. Two things
could publish a page without it, and this extension stops both:

- **a cached chapter**: MyST-NB does not run a chapter whose code has not changed since its
  outputs were cached, so a bank deleted since then would not be written again. Before any
  chapter is read, a missing or incomplete bank drops that chapter from the cache, and the
  build runs it (``builder-inited``);
- **a bank that is missing, incomplete or too big in the output**: after the build, every file
  that ``bank.json`` names must be in ``_static/live/models/`` and the live pages' files must
  hold at most :data:`BUDGET` bytes; otherwise the build fails, saying which
  (``build-finished``).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

LIVE = Path("_static") / "live"
BUDGET = 15_000_000  # bytes: what the live pages add to the published book, bank included
WRITER = "write_live_assets("  # the call, in a chapter's code, that writes the bank

logger = logging.getLogger(__name__)


def missing_files(models: Path) -> list[str]:
    """What a complete bank in ``models`` lacks (``bank.json`` names the rest)."""
    manifest = models / "bank.json"
    if not manifest.is_file():
        return ["bank.json"]
    bank = json.loads(manifest.read_text())
    wanted = ["bank.js", "fallback.png", *bank.get("files", [])]
    wanted += [net["script"] for net in bank["nets"]]
    return [name for name in wanted if not (models / name).is_file()]


def writing_chapters(srcdir: Path) -> list[Path]:
    """The chapters whose code writes the bank."""
    found = []
    for path in sorted((srcdir / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if any(c.cell_type == "code" and WRITER in c.source for c in nb.cells):
            found.append(path)
    return found


def run_the_writer_again(app: Sphinx) -> None:
    srcdir = Path(app.srcdir)
    lacking = missing_files(srcdir / "book" / LIVE / "models")
    if not lacking:
        return
    chapters = writing_chapters(srcdir)
    if not chapters:
        raise ExtensionError(f"no chapter calls {WRITER}...): nothing writes the live pages' bank")
    cache_path = getattr(app.config, "nb_execution_cache_path", "") or ""
    if not cache_path or not Path(cache_path).exists():
        return  # no cache yet: every chapter runs
    from jupyter_cache import get_cache

    cache = get_cache(cache_path)
    for chapter in chapters:
        try:
            record = cache.match_cache_file(chapter)
        except KeyError:
            continue  # not cached: it runs anyway
        cache.remove_cache(record.pk)
        logger.info(
            f"live pages: the bank lacks {', '.join(lacking)}; {chapter.name} runs again"
        )


def check_published_bank(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    live = Path(app.outdir) / LIVE
    lacking = missing_files(live / "models")
    if lacking:
        raise ExtensionError(
            f"the live pages' bank in {live / 'models'} lacks {', '.join(lacking)}: the chapter "
            f"that calls {WRITER}...) did not write it. Run that chapter, or delete "
            "_build/.jupyter_cache, and build again"
        )
    size = sum(f.stat().st_size for f in live.rglob("*") if f.is_file())
    if size > BUDGET:
        raise ExtensionError(
            f"the live pages' files hold {size / 1e6:.1f} MB, over the {BUDGET / 1e6:.0f} MB "
            "a reader should have to download: fewer scenes, or smaller explorers' data"
        )
    logger.info(f"live pages: {size / 1e6:.1f} MB with the bank, within {BUDGET / 1e6:.0f} MB")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", run_the_writer_again)
    app.connect("build-finished", check_published_bank)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

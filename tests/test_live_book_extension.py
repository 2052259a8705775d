"""book/live_book.py: a build that would publish the live page without its bank runs the chapter
that writes it again, and a build whose published bank is incomplete or too big fails."""

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _live_book():
    spec = importlib.util.spec_from_file_location("book_live_book", ROOT / "book" / "live_book.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


live_book = _live_book()


def _bank(folder: Path, *, files=("fields.js",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    bank = {"nets": [{"script": "FCN-8s.onnx.js"}], "files": list(files)}
    (folder / "bank.json").write_text(json.dumps(bank))
    for name in ["bank.js", "fallback.png", "FCN-8s.onnx.js", *files]:
        (folder / name).write_bytes(b"x")
    return folder


def test_a_bank_lacks_what_bank_json_names_and_is_not_there(tmp_path):
    models = _bank(tmp_path / "models")
    assert live_book.missing_files(models) == []
    (models / "fields.js").unlink()
    assert live_book.missing_files(models) == ["fields.js"]
    assert live_book.missing_files(tmp_path / "nothing") == ["bank.json"]


def test_the_chapter_that_writes_the_bank_is_found():
    assert [p.name for p in live_book.writing_chapters(ROOT)] == ["05_skip_fusion.ipynb"]


def _project(tmp_path: Path) -> tuple[Path, Path]:
    """A book whose one chapter writes the bank, its outputs in a jupyter cache."""
    from jupyter_cache import get_cache

    chapter = tmp_path / "notebooks" / "05_x.ipynb"
    chapter.parent.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("write_live_assets(folder, nets)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, chapter)
    cache_path = tmp_path / "_build" / ".jupyter_cache"
    get_cache(cache_path).cache_notebook_file(chapter, check_validity=False)
    return chapter, cache_path


def _app(tmp_path: Path, cache_path: Path, outdir: Path | None = None):
    config = SimpleNamespace(nb_execution_cache_path=str(cache_path))
    builder = SimpleNamespace(format="html")
    return SimpleNamespace(srcdir=str(tmp_path), config=config, builder=builder,
                           outdir=str(outdir or tmp_path / "out"))  # fmt: skip


def test_a_missing_bank_drops_its_chapter_from_the_cache(tmp_path):
    from jupyter_cache import get_cache

    chapter, cache_path = _project(tmp_path)
    app = _app(tmp_path, cache_path)
    _bank(tmp_path / "book" / "_static" / "live" / "models")
    live_book.run_the_writer_again(app)  # a complete bank: the cached chapter stays
    assert get_cache(cache_path).match_cache_file(chapter)
    (tmp_path / "book" / "_static" / "live" / "models" / "bank.json").unlink()
    live_book.run_the_writer_again(app)
    with pytest.raises(KeyError):
        get_cache(cache_path).match_cache_file(chapter)  # the build runs it


def test_the_build_fails_without_a_complete_bank_or_over_the_budget(tmp_path, monkeypatch):
    out = tmp_path / "html"
    app = _app(tmp_path, tmp_path / "cache", outdir=out)
    with pytest.raises(live_book.ExtensionError, match=r"lacks bank\.json.*jupyter_cache"):
        live_book.check_published_bank(app, None)
    models = _bank(out / "_static" / "live" / "models")
    live_book.check_published_bank(app, None)
    (models / "FCN-8s.onnx.js").unlink()
    with pytest.raises(live_book.ExtensionError, match=r"lacks FCN-8s\.onnx\.js"):
        live_book.check_published_bank(app, None)
    (models / "FCN-8s.onnx.js").write_bytes(b"x" * 200)
    monkeypatch.setattr(live_book, "BUDGET", 100)
    with pytest.raises(live_book.ExtensionError, match=r"over the 0 MB"):
        live_book.check_published_bank(app, None)
    live_book.check_published_bank(app, RuntimeError("the build failed"))  # says nothing more

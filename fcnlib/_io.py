"""Atomic file writes: a crash mid-write never leaves a half-written file under the real name."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed :func:`atomic_torch_save` (or
    :func:`atomic_write_text`) to ``path`` left beside it; return the ones removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f"{glob.escape(_temporary_prefix(path))}*.tmp"))
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return stale


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`atomic_torch_save` does."""
    return _atomic_write(lambda f: f.write(text.encode("utf-8")), Path(path))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    return _atomic_write(lambda f: torch.save(obj, f), Path(path))


def atomic_write(write: Callable[[BinaryIO], Any], path: str | os.PathLike) -> Path:
    """Write ``path`` atomically, as :func:`atomic_torch_save` does, through ``write(f)``: any
    writer that takes a binary file, e.g. ``lambda f: image.save(f, format="PNG")`` (give the
    format: the temporary file's name does not end in .png)."""
    return _atomic_write(write, Path(path))


def _atomic_write(write: Callable[[Any], Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so os.replace is a rename within one filesystem: atomic on POSIX/Windows.
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path

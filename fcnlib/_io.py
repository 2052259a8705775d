"""Atomic file writes: a crash mid-write never leaves a half-written file under the real name."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

# The longest temporary name beside a file of n characters is n + TEMPORARY_EXTRA:
# ".{name}." + mkstemp's 8 random characters + ".tmp".
TEMPORARY_EXTRA = len("..") + 8 + len(".tmp")


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def check_writable(folder: str | os.PathLike) -> None:
    """Return if a file can be written into the existing ``folder``; else raise the OSError
    that writing one raises (no permission, a read-only file system). A temporary file is
    created and removed: ``os.access`` says yes to root even on a read-only mount."""
    with tempfile.TemporaryFile(dir=folder):
        pass


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
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    The file gets the mode a plain ``open()`` would give it (``0o666`` less the umask). A
    failed write (a full disk, a file size limit) raises OSError naming ``path``, which still
    holds its previous version.
    """
    return _atomic_write(lambda f: torch.save(obj, f), Path(path))


def atomic_write(write: Callable[[BinaryIO], Any], path: str | os.PathLike) -> Path:
    """Write ``path`` atomically, as :func:`atomic_torch_save` does, through ``write(f)``: any
    writer that takes a binary file, e.g. ``lambda f: image.save(f, format="PNG")`` (give the
    format: the temporary file's name does not end in .png)."""
    return _atomic_write(write, Path(path))


def _plain_mode() -> int:
    """The mode ``open(path, "w")`` creates files with: 0o666 less the process's umask."""
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(write: Callable[[Any], Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so os.replace is a rename within one filesystem: atomic on POSIX/Windows.
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp, _plain_mode())  # mkstemp makes it private (0o600)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _is_write_failure(err):
            raise _write_failed(path, err) from err
        raise
    return path


def _is_write_failure(err: BaseException) -> bool:
    # torch.save into a file object loses the OSError of a failed write: its stream writer
    # reports only "[enforce fail at inline_container.cc:...] . unexpected pos ..."
    text = str(err)
    return isinstance(err, OSError) or (
        isinstance(err, RuntimeError)
        and ("inline_container" in text or "PytorchStreamWriter" in text or bool(_errno(err)))
    )


def _errno(err: BaseException | None) -> int | None:
    """The errno of ``err`` or of the OSError it was raised while handling (torch's stream
    writer raises its "unexpected pos" while the failed write's OSError is handled)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno:
            return err.errno
        err = err.__cause__ or err.__context__
    return None


def _write_failed(path: Path, err: BaseException) -> OSError:
    """The OSError for a write to ``path`` that failed: what happened, that the previous
    version is intact, and what to do."""
    code = _errno(err)
    if code == errno.EFBIG:
        advice = "The file size limit was reached: raise it (ulimit -f) or write elsewhere"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = f"Make {path.parent} writable, or write elsewhere"
    else:  # ENOSPC, EDQUOT, or no errno at all
        advice = f"A full disk is the usual cause: free space on the disk of {path.parent}"
    kept = "still holds its previous version" if path.exists() else "was not created"
    return OSError(
        f"could not write {path} ({type(err).__name__}: {err}). The write went to a temporary "
        f"file, now removed, so {path} {kept}. {advice}, then try again."
    )

"""A training run's record on disk, kept one run's: one writer, nothing of another run replaced.

:func:`fcnlib.train.fit` with ``checkpoint=NAME.pt`` keeps a record beside it
(:func:`record_files`): the checkpoint, ``NAME.best.pt``, ``NAME.metrics.jsonl`` and
``NAME.tb/``. Its rules, each a function here that ``fit`` (and the command line) call:

* before any work, the record can be written: its names fit the file system together with
  their temporary names, and the folder is writable (:func:`check_record_path`);
* one run at a time writes it: the run holds a lock, ``NAME.lock`` beside the record, from
  start to end (:func:`hold_record`); the kernel lets go of it if the run dies;
* a new run never replaces another run's files (:func:`check_new_record`);
* a resumed run first brings the record back in line with its checkpoint
  (:func:`prepare_record`): a run killed mid-save leaves the best weights or the metrics one
  epoch behind the checkpoint, and temporary files beside them.

>>> [p.name for p in record_files("runs/fcn8s.pt").values()]
['fcn8s.pt', 'fcn8s.best.pt', 'fcn8s.metrics.jsonl', 'fcn8s.tb']
>>> lock_path("runs/fcn8s.pt").name, lock_path("runs/fcn8s").name
('fcn8s.lock', 'fcn8s.lock')
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fcnlib._io import (
    TEMPORARY_EXTRA,
    atomic_torch_save,
    check_writable,
    remove_stale_temporaries,
)
from fcnlib.checkpoint import run_files, write_metrics

try:
    import fcntl
except ImportError:  # Windows: the lock is an exclusively created file instead
    fcntl = None

__all__ = [
    "RecordInUseError",
    "check_new_record",
    "check_record_path",
    "hold_record",
    "lock_path",
    "prepare_record",
    "record_files",
    "record_names",
]


class RecordInUseError(RuntimeError):
    """Another run holds the lock of this record (see :func:`hold_record`)."""


def record_files(path: str | os.PathLike) -> dict[str, Path]:
    """The checkpoint ``path`` and the files :func:`fcnlib.checkpoint.run_files` keeps beside it."""
    return {"checkpoint": Path(path), **run_files(path)}


def record_names(path: str | os.PathLike) -> str:
    """The record's files as a reader lists them: ``a.pt, a.best.pt, a.metrics.jsonl, a.tb/``."""
    files = record_files(path)
    return ", ".join(f"{p}/" if key == "tensorboard" else str(p) for key, p in files.items())


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of the record of ``path``: ``NAME.lock``, named from NAME's stem like the
    record's other files, so ``runs/x`` and ``runs/x.pt`` (which share ``x.best.pt`` and
    ``x.metrics.jsonl``) share it too."""
    metrics = run_files(path)["metrics"]
    return metrics.with_name(metrics.name.removesuffix(".metrics.jsonl") + ".lock")


# ----------------------------------------------------------------------------- before any work


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no such query here (Windows): the usual
        return 255


def check_record_path(path: str | os.PathLike) -> None:
    """Raise, before any work, if the record of ``path`` cannot be written.

    ``path`` must not be a folder, its nearest existing folder must be a writable folder, and
    every file of the record must fit the file system's longest name (``PC_NAME_MAX``)
    together with the temporary name it is written through (``.NAME.XXXXXXXX.tmp``).
    Folders that do not exist yet are created when the run starts (:func:`hold_record`).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"checkpoint {path} is a folder; give a file in it, e.g. {path / 'fcn.pt'}"
        )
    folder, missing = path.parent, []
    while not folder.exists() and folder != folder.parent:
        folder, missing = folder.parent, [folder.name, *missing]
    if not folder.is_dir():
        raise NotADirectoryError(f"checkpoint {path}: {folder} is a file, not a folder")
    try:
        check_writable(folder)
    except OSError as e:
        raise PermissionError(
            f"checkpoint {path}: cannot write in {folder} ({e.strerror or e}); choose another place"
        ) from e
    limit = _name_max(folder)
    for name in missing:
        if len(name) > limit:
            raise ValueError(
                f"checkpoint {path}: the folder name {name[:20]}... has {len(name)} characters; "
                f"the file system of {folder} allows {limit}. Choose a shorter one"
            )
    saved = [p.name for key, p in record_files(path).items() if key != "tensorboard"]
    longest = max(saved, key=len)
    need = len(longest) + TEMPORARY_EXTRA
    if need > limit:
        raise ValueError(
            f"checkpoint {path}: the name is too long. The run writes {longest} through a "
            f"temporary file of {need} characters, and the file system of {folder} allows "
            f"{limit}. Give a checkpoint name of at most {len(path.name) - (need - limit)} "
            "characters"
        )


def check_new_record(path: str | os.PathLike) -> None:
    """FileExistsError if a new run at ``path`` would replace files of another run's record
    (say ``x.best.pt`` of a run at ``x.pt`` whose checkpoint was deleted, or one saved at
    ``x.pt`` when the new run is at ``x``)."""
    found = [str(p) for p in record_files(path).values() if p.exists()]
    if found:
        raise FileExistsError(
            f"a new run at {path} would replace the files of another run: {', '.join(found)}. "
            f"Delete them (a run's whole record: {record_names(path)}) to start over there, or "
            "choose another checkpoint path"
        )


# ----------------------------------------------------------------------------- the lock

_HELD: dict[str, int] = {}  # lock files this process holds -> the thread holding each


@contextlib.contextmanager
def hold_record(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of the record of ``path`` while the ``with`` block runs; yield its file.

    The lock file (:func:`lock_path`) is locked with ``flock`` and holds the holder's pid,
    host and start time; it is removed at the end. A second holder is refused with
    :class:`RecordInUseError`, which names the first. The kernel releases the lock of a run
    that dies, so a killed run's leftover file is taken over. The thread that holds the lock
    may enter again (the command line holds it around :func:`fcnlib.train.fit`, which takes it
    too).
    """
    lock = Path(os.path.realpath(lock_path(path)))
    if _HELD.get(str(lock)) == threading.get_ident():
        yield lock
        return
    created = _make_folders(lock.parent)
    try:
        fd = _lock(lock, path)
        _HELD[str(lock)] = threading.get_ident()
        try:
            holder = {"pid": os.getpid(), "host": socket.gethostname(),
                      "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}  # fmt: skip
            os.write(fd, (json.dumps(holder) + "\n").encode())
            yield lock
        finally:
            del _HELD[str(lock)]
            _release(lock, fd)
    finally:
        for folder in reversed(created):  # a run that saved nothing leaves no empty folder
            with contextlib.suppress(OSError):
                folder.rmdir()


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and the folders above it that are missing; return those, top first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing, folder = [folder, *missing], folder.parent
    for new in missing:
        new.mkdir(exist_ok=True)
    return missing


def _lock(lock: Path, path: str | os.PathLike) -> int:
    """An open file descriptor of ``lock``, locked; RecordInUseError if another holds it."""
    if fcntl is None:  # no flock (Windows): the lock is the file's exclusive creation
        try:
            return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            raise RecordInUseError(_in_use(path, lock)) from None
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if isinstance(err, BlockingIOError):  # another open file holds it
                raise RecordInUseError(_in_use(path, lock)) from None
            raise OSError(
                f"cannot lock {lock} ({err}): the file system of {lock.parent} does not "
                "support flock; keep the run's record on a local disk"
            ) from err
        if _same_file(fd, lock):
            os.ftruncate(fd, 0)  # a killed holder's pid, host and time
            return fd
        os.close(fd)  # the holder removed the file as it let go: lock the one there now


def _same_file(fd: int, lock: Path) -> bool:
    try:
        on_disk = os.stat(lock)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _release(lock: Path, fd: int) -> None:
    if fcntl is not None:  # removed while still locked: no one can lock the file being removed
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)
    else:  # Windows removes no open file
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _in_use(path: str | os.PathLike, lock: Path) -> str:
    """Who holds the lock (as it wrote in the file), and what to do."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):  # gone, or not written yet
        holder = {}
    holder = holder if isinstance(holder, dict) else {}
    if {"pid", "host", "since"} <= holder.keys():
        pid, host = holder["pid"], holder["host"]
        who = f"pid {pid} on host {host}, since {holder['since']}"
        stop = f"stop it (kill {pid} on {host})"
    else:
        who, stop = "it has just started", "stop it"
    message = (
        f"{path} is in use: another training run is writing its record ({who}; lock file "
        f"{lock}). Wait for that run to end, or {stop}, then try again; or choose another "
        "checkpoint path"
    )
    if fcntl is None:  # an exclusively created file outlives a killed run
        message += f". If that run is no longer running, delete {lock}"
    return message


# ----------------------------------------------------------------------------- repair


def prepare_record(path: str | os.PathLike, state: dict[str, Any] | None) -> None:
    """Make the record of ``path`` ready for a run: remove the temporary files a killed save
    left beside each of its files and, when resuming the checkpoint ``state``, bring the
    record back in line with it.

    A run saves the checkpoint, then the best weights (when the epoch is the best), then the
    metrics. Killed in between, it leaves the metrics behind (rewritten here from the
    checkpoint's history) or the best weights of an earlier epoch (rewritten here from the
    checkpoint when the history's best epoch is the checkpoint's own). A best-weights file
    whose epoch's weights are nowhere any more cannot be rewritten: a warning says so.
    """
    files = record_files(path)
    for key in ("checkpoint", "best", "metrics"):
        remove_stale_temporaries(files[key])
    if state is None:
        return
    write_metrics(files["metrics"], state["history"])
    scored = [r for r in state["history"] if math.isfinite(r.get("mean_iu", math.nan))]
    if not scored:
        return  # never validated: no best weights
    best = max(scored, key=lambda r: r["mean_iu"])  # the first of equals, as fit keeps them
    saved = _saved_epoch(files["best"])
    if saved == best["epoch"]:
        return
    if best["epoch"] == state["epoch"]:
        # what fit writes as NAME.best.pt: the checkpoint without the optimizer's state
        atomic_torch_save({**state, "optimizer": None, "scheduler": None, "scaler": None},
                          files["best"])  # fmt: skip
        return
    found = "is missing" if saved is None else f"holds epoch {saved}"
    warnings.warn(
        f"{files['best']} {found}, but the run's best mean IU ({best['mean_iu']:.4f}) was "
        f"epoch {best['epoch']}, and {path} holds epoch {state['epoch']}: those weights are "
        f"lost. {files['best']} is written again when an epoch beats that score.",
        stacklevel=2,
    )


def _saved_epoch(best: Path) -> int | None:
    """The epoch a best-weights file holds; None if it is missing or unreadable."""
    if not best.is_file():
        return None
    try:  # mmap: the epoch without reading the weights
        state = torch.load(best, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a damaged file is as good as none: rewritten where possible
        return None
    return state.get("epoch") if isinstance(state, dict) else None

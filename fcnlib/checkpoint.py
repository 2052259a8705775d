"""Checkpoints: atomic saves of a whole training state, loaded with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values (config as a dict, history as a list
of dicts, random states as tensors), so loading one never runs code from the file.
:func:`save_checkpoint` writes it atomically (a crash mid-write never loses the previous one);
:func:`load_checkpoint` restores it into a model, optimizer and scaler and explains a file that
is not a checkpoint. :mod:`fcnlib.train` re-exports both.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fcnlib._io import atomic_torch_save, atomic_write_text
from fcnlib.recipes import TrainConfig

__all__ = [
    "load_checkpoint",
    "restore",
    "rng_state",
    "run_files",
    "save_checkpoint",
    "set_rng_state",
    "write_metrics",
]

_FORMAT = "fcnlib.checkpoint/1"


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper keeps the original here
    return model.module if isinstance(model, DistributedDataParallel) else model


def rng_state() -> dict[str, Any]:
    """The random states of torch (CPU and CUDA), Python and NumPy, as tensors and plain values
    (what a checkpoint keeps, loadable with ``weights_only=True``)."""
    _, py_state, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_gauss": py_gauss,
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_rest": [int(np_pos), int(np_has_gauss), float(np_gauss)],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back the random states that :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((3, tuple(state["python"].tolist()), state["python_gauss"]))
    pos, has_gauss, gauss = state["numpy_rest"]
    np.random.set_state(
        ("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss)
    )


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    epoch: int,
    step: int,
    config: TrainConfig,
    history: Sequence[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    precision: str | None = None,
    world_size: int | None = None,
) -> Path:
    """Write a checkpoint atomically: a crash mid-write never loses the previous one.

    Tensors and plain Python values only (config as a dict, history as a list of dicts, random
    states as tensors), so :func:`load_checkpoint` can use ``torch.load(weights_only=True)``.
    ``epoch`` counts the completed epochs; ``extra`` must hold plain values too. ``precision``
    is the one the run computed in (:func:`fcnlib.precision.precision_name`: ``config.amp``
    as resolved on the machine that ran it); None where unknown. ``world_size`` is the number
    of processes that trained together (1 without ``torchrun``): an epoch's steps depend on
    it. A failed write raises OSError and leaves the previous file as it was.
    """
    path = Path(path)
    state = {
        "format": _FORMAT,
        "epoch": int(epoch),
        "step": int(step),
        "config": config.to_dict(),
        "history": [dict(record) for record in history],
        "model": _unwrap(model).state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "rng": rng_state(),
        "extra": dict(extra or {}),
        "precision": precision,
        "world_size": None if world_size is None else int(world_size),
    }
    return atomic_torch_save(state, path)


def _unloadable(path: Path, err: Exception) -> str:
    """Why ``path`` did not load, and what to do: a torch.save file (a zip archive, or a pickle
    in the legacy format) that fails to load is a damaged checkpoint; anything else (a text
    file, an image) is the wrong file, and deleting it would be bad advice."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":
        # torch's own message here (KeyError: 101, or advice to drop weights_only) misleads
        return (
            f"{path} is not an fcnlib checkpoint: expected a file written by fcnlib's train "
            "(python -m fcnlib train, fcnlib.train.fit or save_checkpoint), found a file that "
            "is not a PyTorch save at all ("
            + (f"it starts with {head!r}, neither a zip archive nor a pickle" if head else "empty")
            + "). Check the path and the argument order."
        )
    found = f"torch.load failed with {type(err).__name__}: {err}"
    if isinstance(err, pickle.UnpicklingError) and "weights_only" in str(err):
        return (
            f"{path} is not an fcnlib checkpoint: it holds Python objects that "
            "torch.load(weights_only=True) refuses to run (a whole model saved with "
            "torch.save(model)?); expected a checkpoint written by fcnlib's train (python -m "
            "fcnlib train, fcnlib.train.fit or save_checkpoint), tensors and plain values only."
        )
    return (
        f"{path} is corrupt or not an fcnlib checkpoint (a truncated write?); {found}. "
        "Load another file, or delete it (with the rest of its run's record, see "
        "fcnlib.record) to train there again."
    )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a :func:`save_checkpoint` file (``weights_only=True``) into the objects given.

    Returns the whole dict: ``epoch``, ``step``, ``config`` (a dict; see
    :meth:`TrainConfig.from_dict`), ``history``, ``model`` (the state dict), ``rng``, ``extra``.
    """
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pt"))[:3]
        raise IsADirectoryError(
            f"{path} is a folder, not a checkpoint; give a checkpoint file"
            + (f" (it holds {', '.join(inside)})" if inside else "")
        )
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path.resolve()}; check the path")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise  # unreadable as a file: the OS's own message names the path
    # torch's zip reader fails on a truncated file with a bare OSError (errno 22, no path)
    # A text file fails with KeyError: 101, other files with anything: all mean 'not this file'.
    except Exception as err:
        raise RuntimeError(_unloadable(path, err)) from err
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise RuntimeError(
            f"{path} is not an fcnlib checkpoint (no {_FORMAT!r} marker); was it saved with "
            f"torch.save(model.state_dict())? Load that with model.load_state_dict(torch.load(...))"
        )
    return restore(state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                   path=path)  # fmt: skip


def restore(
    state: dict[str, Any],
    *,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    path: str | os.PathLike = "the checkpoint",
) -> dict[str, Any]:
    """Load a checkpoint dict (from :func:`load_checkpoint`) into the objects given."""
    if model is not None:
        target = _unwrap(model)
        expected, found = set(target.state_dict()), set(state["model"])
        if expected != found:
            missing, unexpected = sorted(expected - found), sorted(found - expected)
            raise RuntimeError(
                f"{path} holds weights for a different model: missing keys {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                f"{' ...' if len(unexpected) > 5 else ''}. Build the same architecture first."
            )
        target.load_state_dict(state["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and state.get(name) is not None:
            obj.load_state_dict(state[name])
    return state


def run_files(path: str | os.PathLike) -> dict[str, Path]:
    """The files that :func:`fcnlib.train.fit` keeps beside a checkpoint ``NAME.pt``.

    ``best``: the weights of the epoch with the best mean IU so far (``NAME.best.pt``, a
    checkpoint without optimizer state); ``metrics``: one JSON object per epoch
    (``NAME.metrics.jsonl``, rewritten after each epoch); ``tensorboard``: event files
    (``NAME.tb/``, when TensorBoard is installed).

    >>> [str(p) for p in run_files("runs/fcn8s.pt").values()]
    ['runs/fcn8s.best.pt', 'runs/fcn8s.metrics.jsonl', 'runs/fcn8s.tb']
    """
    path = Path(path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return {
        "best": path.with_name(f"{stem}.best{path.suffix or '.pt'}"),
        "metrics": path.with_name(f"{stem}.metrics.jsonl"),
        "tensorboard": path.with_name(f"{stem}.tb"),
    }


def write_metrics(path: str | os.PathLike, history: Sequence[dict[str, Any]]) -> Path:
    """Write a run's history as JSON lines, one epoch per line, atomically; nan becomes null.

    Read it back with ``[json.loads(line) for line in open(path)]`` (or
    ``pandas.read_json(path, lines=True)``).
    """

    def plain(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None  # strict JSON has no nan/inf
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    lines = [json.dumps({k: plain(v) for k, v in record.items()}) for record in history]
    return atomic_write_text("".join(line + "\n" for line in lines), path)

"""Device, seeding and the two scales every chapter runs at.

* **lab bench** (default): synthetic scenes from :mod:`fcnlib.data`, small backbones, CPU-sized
  images. Offline; each chapter trains its models in a few CPU minutes.
* **full**: PASCAL VOC + SBD with ImageNet backbones, the paper's sizes, meant for a GPU.

One switch picks the scale: the ``FCN_SCALE`` environment variable (``lab``, ``full`` or ``auto``)
or the ``scale`` variable of a chapter's ``parameters`` cell, which wins over the environment::

    >>> from fcnlib.config import get_scale
    >>> get_scale("lab").name
    'lab'

``auto`` means the lab bench unless full scale is asked for explicitly: nothing downloads, and no
chapter turns into a multi-hour GPU job, just because a GPU happens to be present.

A training run's own settings (learning rate, batch size, precision, ...) are not here: they
are a :class:`fcnlib.recipes.TrainConfig`, made by :func:`fcnlib.recipes.recipe`.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "SCALES",
    "Scale",
    "cache_dir",
    "data_dir",
    "describe_device",
    "get_scale",
    "pick_device",
    "seed_everything",
]

SCALE_ENV = "FCN_SCALE"
DEVICE_ENV = "FCN_DEVICE"


@dataclass(frozen=True)
class Scale:
    """Preset sizes for one scale. Chapters read their sizes from here, never hard-code them.

    Attributes:
        name: ``"lab"`` or ``"full"``.
        image_size: side of the (square) training scenes / crops, in pixels.
        n_train, n_val, n_test: number of images per split (``None``: the whole real split).
        batch_size: training minibatch size.
        dataset: ``"shapes"`` (synthetic) or ``"voc"``.
        backbone: default backbone name.
        n_classes: number of classes including background (void 255 is not a class).
    """

    name: str
    image_size: int
    n_train: int | None
    n_val: int | None
    n_test: int | None
    batch_size: int
    dataset: str
    backbone: str
    n_classes: int

    def replace(self, **changes) -> Scale:
        """A copy with some fields changed (the preset itself is frozen)."""
        return dataclasses.replace(self, **changes)


SCALES: dict[str, Scale] = {
    "lab": Scale(
        name="lab",
        image_size=128,
        n_train=1024,
        n_val=128,
        n_test=128,
        batch_size=16,
        dataset="shapes",
        backbone="tiny_vgg",
        n_classes=7,
    ),
    "full": Scale(
        name="full",
        image_size=500,
        n_train=None,
        n_val=None,
        n_test=None,
        batch_size=20,
        dataset="voc",
        backbone="vgg16",
        n_classes=21,
    ),
}


def get_scale(name: str | None = None) -> Scale:
    """The scale preset to run at.

    Args:
        name: ``"lab"``, ``"full"``, ``"auto"`` or ``None``. ``None`` reads ``$FCN_SCALE``
            (default ``auto``); ``auto`` resolves to the lab bench.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name is None:
        name = os.environ.get(SCALE_ENV, "auto")
    key = str(name).strip().lower()
    aliases = {"auto": "lab", "lab": "lab", "labbench": "lab", "lab_bench": "lab", "full": "full"}
    if key not in aliases:
        source = f" (from ${SCALE_ENV})" if name == os.environ.get(SCALE_ENV) else ""
        raise ValueError(
            f"unknown scale {name!r}{source}: expected one of 'lab', 'full' or 'auto'. "
            f"Set it in the chapter's parameters cell (scale = 'lab') or with {SCALE_ENV}=lab."
        )
    return SCALES[aliases[key]]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: CUDA if present, then Apple's MPS, else the CPU.

    Args:
        device: ``None``/``"auto"`` picks automatically (``$FCN_DEVICE`` overrides the
            automatic choice); anything else is passed to :class:`torch.device` and checked.

    Raises:
        ValueError: for a name that is not a device to compute on (``"meta"``, a typo),
            naming ``$FCN_DEVICE`` when it came from there.
        RuntimeError: if a CUDA or MPS device is asked for but not available.
    """
    what = "device"
    if device is None or str(device) == "auto":
        device = os.environ.get(DEVICE_ENV) or "auto"
        what = f"${DEVICE_ENV}" if device != "auto" else what  # name the variable in errors
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"{what} {str(device)!r} is not a device to run on: expected auto, cpu, cuda, "
            f"cuda:N or mps{' (unset it for auto)' if what != 'device' else ''}"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"{what} {str(device)!r} was asked for, but PyTorch sees no CUDA GPU. "
            "Use device='auto' (or 'cpu'); in Colab choose Runtime > Change runtime type > GPU."
            + (f" Or unset ${DEVICE_ENV}." if what != "device" else "")
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise RuntimeError(
            f"{what} {str(device)!r} was asked for, but PyTorch sees "
            f"{torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"{what} {str(device)!r} was asked for, but MPS is not available.")
    return dev


def describe_device(device: torch.device | str | None = None) -> str:
    """One line saying what will run the chapter, e.g. ``'cpu (2 threads)'``."""
    dev = pick_device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    if dev.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'' if threads == 1 else 's'})"
    return str(dev)


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a CPU generator seeded the same.

    With ``deterministic=True`` PyTorch is also asked for deterministic kernels (slower on
    GPU; some operations then raise if they have no deterministic version).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def cache_dir() -> Path:
    """Where fcnlib caches what it computes (pre-trained lab backbones): ``$FCN_CACHE``."""
    return Path(os.environ.get("FCN_CACHE", Path.home() / ".cache" / "fcnlib")).expanduser()


def data_dir() -> Path:
    """Where real datasets are looked for and downloaded to: ``$FCN_DATA``."""
    default = cache_dir() / "data"
    return Path(os.environ.get("FCN_DATA", default)).expanduser()

"""Reading datasets from disk: where they live, one checked reader per file kind, one base.

Every real dataset of the course (:mod:`~fcnlib.data.voc`, :mod:`~fcnlib.data.siftflow`,
:mod:`~fcnlib.data.nyud`, :mod:`~fcnlib.data.context`) is a :class:`PairDataset`: a list of
image ids and a ``_load(id)`` that reads one sample with the checked readers below, so a dataset
of thousands of files is only as fragile as the message its worst file gets. A file that does
not decode, a label of another size than its image, or a class id the dataset does not define
raises an error that names the sample, the file and what to do (a missing file is called
missing, one that does not decode damaged); a split list that names no image is refused when
it is read; a missing dataset raises :class:`DatasetNotFoundError` saying what is missing,
where it was looked for and how to get it; :func:`writable_dir` names a data root that
cannot be written to.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from fcnlib._io import check_writable
from fcnlib.config import data_dir
from fcnlib.data.labels import IGNORE_INDEX
from fcnlib.data.transforms import PairTransform, as_tv_tensors

__all__ = [
    "FCN_REPOSITORY",
    "DatasetNotFoundError",
    "PairDataset",
    "check_choice",
    "check_ids",
    "check_size",
    "data_root",
    "decode",
    "load_mat",
    "read_ids",
    "read_rgb",
    "require_files",
    "shift_classes",
    "writable_dir",
]

Transforms = Callable[..., Any]

# The official FCN code, whose split lists and layouts the datasets follow.
FCN_REPOSITORY = "https://github.com/shelhamer/fcn.berkeleyvision.org"


# --------------------------------------------------------------------------------------------
# Where the data lives, and a clear error when it does not.
# --------------------------------------------------------------------------------------------


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk. The message says what is missing, where, and how to fetch it."""


def data_root(root: str | Path | None) -> Path:
    """``root`` made absolute, or :func:`fcnlib.config.data_dir` (``$FCN_DATA``) for None."""
    return (data_dir() if root is None else Path(root)).expanduser().resolve()


def require_files(title: str, split: str, root: Path, needed: Sequence[Path], how: str) -> None:
    """Raise DatasetNotFoundError naming the first of ``needed`` that does not exist."""
    missing = next((p for p in needed if not p.exists()), None)
    if missing is not None:
        raise DatasetNotFoundError(
            f"{title} ({split!r} split) was not found: {missing} does not exist.\n"
            f"Looked under the data root {root} (the root= argument, else $FCN_DATA).\n"
            f"There is no automatic download for {title}; get it by hand:\n{how}"
        )


def check_choice(name: str, value: Any, valid: Sequence[Any]) -> Any:
    """``value`` if it is one of ``valid``, else ValueError naming the argument and the choices."""
    if value not in valid:
        raise ValueError(f"{name} must be one of {tuple(valid)}, got {value!r}")
    return value


def read_ids(path: str | Path, *, fix: str = "") -> list[str]:
    """Image ids listed in a split file, one per line, in file order (blank lines skipped).

    A list that names no image raises ValueError naming the file (a dataset of no images
    would fail later, in a DataLoader, with a message about ``num_samples=0``); ``fix`` says
    where a good copy of the list comes from.
    """
    ids = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not ids:
        fix = fix or "Replace it with the dataset's own copy of the list."
        raise ValueError(
            f"the split list {path} lists no images (it is empty); a split list names one "
            f"image id per line. {fix}"
        )
    return ids


def writable_dir(path: Path, what: str) -> Path:
    """``path``, created if need be, after checking that a file can be written into it.

    Raises PermissionError (no write access, a read-only file system) or OSError (a file in
    the way) naming the folder and ``what`` was to be written there, and saying to choose a
    writable data root.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        check_writable(path)
    except OSError as e:
        denied = e.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        raise (PermissionError if denied else OSError)(
            f"cannot write {what} into {path} ({e.strerror or e}). Choose a data root you can "
            f"write to with --root (Python: root=) or the environment variable $FCN_DATA."
        ) from e
    return path


# --------------------------------------------------------------------------------------------
# Reading one sample, with errors that name the file: a dataset of thousands of images is only
# as good as its worst file, and "image file is truncated" alone does not say which one that is.
# --------------------------------------------------------------------------------------------


def decode(path: Path, read: Callable[[Path], Any], sample: str, fix: str) -> Any:
    """``read(path)``, with errors that name the file and the sample and end with ``fix``.

    A file that is not there raises FileNotFoundError saying it is missing; one that cannot be
    read, PermissionError; one that does not decode, OSError saying it is damaged (empty,
    truncated or corrupt), with the decoder's own error attached as the cause.
    """
    if not path.is_file():
        if path.is_dir():
            raise IsADirectoryError(f"sample {sample!r}: {path} is a folder, not a file. {fix}")
        raise FileNotFoundError(f"sample {sample!r}: {path} is missing. {fix}")
    try:
        return read(path)
    except MemoryError:
        raise
    except PermissionError as e:
        raise PermissionError(
            f"sample {sample!r}: {path} cannot be read ({e.strerror}); give this user read "
            f"access to the dataset's files (e.g. chmod -R a+rX on its folder)."
        ) from e
    except Exception as e:  # decoders raise OSError, ValueError, IndexError, SyntaxError, ...
        empty = path.stat().st_size == 0
        state = "empty (0 bytes)" if empty else "truncated or corrupt"
        raise OSError(
            f"sample {sample!r}: could not decode {path} ({type(e).__name__}: {e}). The file "
            f"is damaged: {state}. {fix}"
        ) from e


def read_rgb(path: Path) -> torch.Tensor:
    """uint8 (3, H, W) from a JPEG or PNG file (decoded in full, so truncation shows here)."""
    with Image.open(path) as im:
        return TF.pil_to_tensor(im.convert("RGB"))


def check_size(
    sample: str,
    label: tuple[Path, Sequence[int]],
    image: tuple[Path, Sequence[int]],
    fix: str,
    *,
    what: str = "label",
) -> None:
    """Raise ValueError unless ``label``'s shape is ``image``'s (H, W): (path, shape) pairs."""
    (label_path, label_shape), (image_path, image_shape) = label, image
    h, w = image_shape[-2:]
    if tuple(label_shape) != (h, w):
        colour = len(label_shape) == 3 and tuple(label_shape[:2]) == (h, w) and what == "label"
        hint = " It is a colour image; a label is a palette or greyscale PNG." if colour else ""
        raise ValueError(
            f"sample {sample!r}: the {what} {label_path} has shape {tuple(label_shape)}, but "
            f"the image {image_path} is {h}x{w} (H x W): expected shape ({h}, {w}), one value "
            f"per pixel of that image.{hint} {fix}"
        )


def check_ids(
    sample: str,
    label: np.ndarray,
    path: Path,
    valid: tuple[int, int],
    *,
    void: int | None,
    expected: str,
    fix: str,
) -> None:
    """Raise ValueError if integer ``label`` holds values outside ``valid`` (inclusive) other
    than ``void``; one pass of two comparisons over the label, the slow part only on failure."""
    low, high = valid
    outside = label[(label < low) | (label > high)]
    if void is not None:
        outside = outside[outside != void]
    if outside.size:
        found = np.unique(outside).tolist()
        listed = ", ".join(map(str, found[:10])) + (", ..." if len(found) > 10 else "")
        raise ValueError(
            f"sample {sample!r}: the label {path} holds class ids [{listed}]; expected "
            f"{expected}. {fix}"
        )


def load_mat(path: Path, variable: str, sample: str, fix: str) -> np.ndarray:
    """Variable ``variable`` of the MATLAB file ``path`` (decoded with :func:`decode`)."""
    from scipy.io import loadmat

    mat = decode(path, loadmat, sample, fix)
    if variable not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(
            f"sample {sample!r}: the label file {path} has no variable {variable!r} (it holds "
            f"{found or 'none'}), so it is not a label of this dataset. {fix}"
        )
    return mat[variable]


def shift_classes(raw: np.ndarray, n_classes: int) -> np.ndarray:
    """Raw labels 1..n -> 0..n-1, anything else (0 or -1: unlabelled) -> void: uint8 (H, W)."""
    raw = np.asarray(raw).astype(np.int64)
    labelled = (raw >= 1) & (raw <= n_classes)
    return np.where(labelled, raw - 1, IGNORE_INDEX).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# The one dataset base: load, transform jointly, convert.
# --------------------------------------------------------------------------------------------


class PairDataset(Dataset):
    """Items ``_load(id) -> (tv Image, tv Mask)``, transformed jointly, converted to fcnlib's
    convention: float32 image (uint8 scaled to [0, 1], float kept), int64 label.

    ``transforms`` is called on the ``(tv_tensors.Image, tv_tensors.Mask)`` pair, so any v2
    transform works; a :class:`~fcnlib.data.transforms.PairTransform` is applied through its v2
    pipeline, which takes any number of image channels and (K, H, W) labels (what RGB-D and
    two-task items need). With ``PairTransform(compact=True)`` every dataset returns items as
    decoded (uint8 image, integer label) for :func:`fcnlib.train.batch_to` to convert on the
    device, bit for bit as the float pair would have been.
    """

    split: str
    root: Path

    def __init__(self, ids: list[str], transforms: Transforms | None, lists: list[Path]) -> None:
        self.ids = list(ids)
        self.transforms = transforms  # as given
        self.compact = bool(getattr(transforms, "compact", False))
        # a PairTransform is applied through its v2 pipeline: any channels, (K, H, W) labels
        self._joint = transforms.pipeline if isinstance(transforms, PairTransform) else transforms
        self._lists = lists  # the split lists the ids came from, named in errors

    def _load(self, name: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        raise NotImplementedError

    def _fix(self, name: str) -> str:
        lists = " / ".join(str(p) for p in self._lists)
        return (
            f"Replace the file with the one from the dataset's archive, or remove {name!r} "
            f"from {lists}."
        )

    def _image(self, name: str, path: Path) -> torch.Tensor:
        """uint8 (3, H, W); a file that does not decode is named."""
        return decode(path, read_rgb, name, self._fix(name))

    def _label(
        self,
        name: str,
        path: Path,
        variable: str,
        n_classes: int,
        image: tuple[Path, torch.Size],
        *,
        unlabelled: tuple[int, ...] = (0,),
    ) -> np.ndarray:
        """The ``.mat`` label ``path`` holding raw ids 1..n_classes and ``unlabelled`` values,
        checked against its image ``(path, shape)`` and shifted to 0..n-1 and void: uint8
        (H, W). Raw ids beyond those are errors in the file, not "unlabelled"."""
        fix = self._fix(name)
        raw = np.asarray(load_mat(path, variable, name, fix))
        check_size(name, (path, raw.shape), image, fix)
        raw = raw.astype(np.int64)
        listed = " or ".join(map(str, unlabelled))
        expected = f"1..{n_classes} ({n_classes} classes) or {listed} (unlabelled)"
        check_ids(
            name, raw, path, (min(unlabelled), n_classes), void=None, expected=expected, fix=fix
        )
        return shift_classes(raw, n_classes)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image, label = self._load(self.ids[index])
        if self._joint is not None:
            image, label = self._joint(image, label)
        if isinstance(image, (Image.Image, np.ndarray)):  # a transform that returns PIL/NumPy
            image, label = as_tv_tensors(image, label)
        image = torch.as_tensor(image).as_subclass(torch.Tensor)
        label = torch.as_tensor(label).as_subclass(torch.Tensor)
        if self.compact:  # as decoded: fcnlib.train.batch_to converts on the device
            return image, label
        return TF.to_dtype(image, torch.float32, scale=True), label.long()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, root={str(self.root)!r})"
        )

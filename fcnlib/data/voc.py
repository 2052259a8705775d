"""PASCAL VOC and SBD: the real data of the paper's full-scale experiments.

The datasets
------------
* **PASCAL VOC 2011 and 2012, segmentation** (``voc2011``, ``voc2012``). Photographs labelled
  with 20 object classes plus background, :data:`VOC_CLASSES`. Labels are palette PNGs whose
  pixel values are class indices; a band about five pixels wide along every object outline, and
  objects too hard to label, are *void* (255): neither loss nor metrics count them. Splits
  ``train``, ``val`` and ``trainval`` (see :data:`SPLIT_SIZES`; the test labels were never
  released).
* **SBD**, the Semantic Boundaries Dataset of Hariharan et al. (``sbd``): 11,355 images of
  VOC 2011, far more than VOC's own segmentation sets, labelled by another team and split into
  ``train`` (8,498) and ``val`` (2,857). Its labels are MATLAB ``.mat`` files (a struct
  ``GTcls`` with a field ``Segmentation``) and have no void band.

Why ``seg11valid``
------------------
The paper trains on SBD ``train`` and reports VOC 2011 ``val`` numbers. But SBD was drawn from
the same pool of VOC 2011 images, and several hundred of the VOC 2011 ``val`` images are in SBD
``train``: scoring them would grade a model on pictures it was trained on. The paper therefore
validates on VOC 2011 ``val`` *minus* SBD ``train``, 736 images. :func:`seg11valid_ids` computes
that list from the two id lists, and :class:`Seg11Valid` loads it.

Where the data comes from
-------------------------
Nothing is downloaded unless asked for, with ``download=True`` or :func:`fetch` (from the
command line: ``python -m fcnlib data fetch voc2012``). Downloads go through torchvision's own
machinery, which checks each archive's MD5 checksum before extracting it:

* ``voc2012``: ``VOCtrainval_11-May-2012.tar`` from Oxford's VOC mirror, about 2 GB, unpacked to
  ``root/VOCdevkit/VOC2012``;
* ``voc2011``: ``VOCtrainval_25-May-2011.tar`` from the same mirror, about 1.7 GB, unpacked to
  ``root/TrainVal/VOCdevkit/VOC2011`` (that is how this archive unpacks);
* ``sbd``: ``benchmark.tgz`` from UC Berkeley, about 1.4 GB, unpacked to ``root/sbd``.

The exact addresses and checksums are torchvision's (``torchvision.datasets.voc`` and
``torchvision.datasets.sbd``). The archives stay next to the data (delete them to save space).
:func:`fetch` does nothing if the data is complete (every split list, and every image and
label it names) and otherwise unpacks the archive again, so a download or an unpacking cut
short is mended by running it again; a data root it cannot write to is named as such.
An SBD archive unpacked by hand, as ``root/benchmark_RELEASE/dataset``, is found as well.

The root directory defaults to :func:`fcnlib.config.data_dir` (``$FCN_DATA``).

Items
-----
Every dataset here yields ``(image, label)`` in the convention of
:class:`fcnlib.data.shapes.ShapesDataset`: ``image`` float32 (3, H, W) in [0, 1], ``label``
int64 (H, W) holding 0..20 or 255 (void). ``transforms`` act jointly on the pair, so that a
mirrored image gets a mirrored label: see :func:`fcnlib.data.transforms.train_transform` and
:func:`~fcnlib.data.transforms.eval_transform`. Each item is checked as it is read: a label
of another size than its image, a class id outside 0..20 other
than 255, or a file that does not decode raises an error naming the sample and the file.
A transform made with ``compact=True`` (:func:`paper_datasets` passes it on) leaves items as
decoded instead, uint8 image and label, for :func:`fcnlib.train.fit` to convert on the device.

Offline, :func:`fcnlib.data.fake.write_fake_voc` and :func:`~fcnlib.data.fake.write_fake_sbd`
write tiny random datasets in exactly the real on-disk formats, so the same code runs in tests
and CI::

    >>> import tempfile
    >>> from fcnlib.data.fake import write_fake_voc
    >>> root = tempfile.mkdtemp()
    >>> _ = write_fake_voc(root, n_train=2, n_val=1, size=(24, 32))
    >>> image, label = VOCSegmentation("train", root=root)[0]
    >>> image.shape, image.dtype, label.shape, label.dtype
    (torch.Size([3, 24, 32]), torch.float32, torch.Size([24, 32]), torch.int64)
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import torchvision
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from fcnlib.data.files import (
    DatasetNotFoundError,
    PairDataset,
    check_choice,
    check_ids,
    check_size,
    data_root,
    decode,
    load_mat,
    read_ids,
    read_rgb,
    writable_dir,
)
from fcnlib.data.labels import IGNORE_INDEX
from fcnlib.data.transforms import as_tv_tensors, eval_transform, train_transform

# DatasetNotFoundError, train_transform and eval_transform live in fcnlib.data.files and
# fcnlib.data.transforms; they are part of this module's API too, as every VOC user needs them.
__all__ = [
    "DATASETS",
    "SPLIT_SIZES",
    "TRAIN_SETS",
    "VOC_CLASSES",
    "DatasetNotFoundError",
    "SBDSegmentation",
    "Seg11Valid",
    "VOCSegmentation",
    "check_year",
    "dataset_dir",
    "eval_transform",
    "fetch",
    "paper_datasets",
    "sbd_ids",
    "seg11valid_ids",
    "train_transform",
    "voc_ids",
]

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)  # label c is VOC_CLASSES[c]; 255 is void

DATASETS = ("voc2012", "voc2011", "sbd")  # what fetch() knows

# Number of images per split of the real data, to check a download against.
SPLIT_SIZES: dict[str, dict[str, int]] = {
    "voc2012": {"train": 1464, "val": 1449, "trainval": 2913},
    "voc2011": {"train": 1112, "val": 1111, "trainval": 2223},
    "sbd": {"train": 8498, "val": 2857},
    "seg11valid": {"val": 736},
}

_VOC_SPLITS = ("train", "val", "trainval")
_SBD_SPLITS = ("train", "val")
_SPLITS = {"voc2012": _VOC_SPLITS, "voc2011": _VOC_SPLITS, "sbd": _SBD_SPLITS}
_TITLES = {"voc2012": "PASCAL VOC 2012", "voc2011": "PASCAL VOC 2011", "sbd": "SBD"}
_SIZES = {"voc2012": "about 2 GB", "voc2011": "about 1.7 GB", "sbd": "about 1.4 GB"}

Pair = tuple[Any, Any]
Transforms = Callable[..., Any]


# --------------------------------------------------------------------------------------------
# Where the data lives, and a clear error when it does not.
# --------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {DATASETS}")
    return name


def check_year(year: str | int) -> str:
    """``year`` as ``"2011"`` or ``"2012"``; ValueError for any other."""
    year = str(year)
    if year not in ("2011", "2012"):
        raise ValueError(f"year must be '2011' or '2012', got {year!r}")
    return year


def dataset_dir(name: str, root: str | Path | None = None) -> Path:
    """The directory that holds (or would hold) dataset ``name`` under ``root``.

    The layouts are torchvision's: ``VOCdevkit/VOC2012``, ``TrainVal/VOCdevkit/VOC2011`` (as the
    2011 archive unpacks) and ``sbd`` (what ``SBDataset(download=True)`` leaves). For SBD, an
    archive unpacked by hand as ``benchmark_RELEASE/dataset`` is used when ``sbd`` is absent.
    """
    base = data_root(root)
    if _check_name(name) == "voc2012":
        return base / "VOCdevkit" / "VOC2012"
    if name == "voc2011":
        return base / "TrainVal" / "VOCdevkit" / "VOC2011"
    unpacked = base / "benchmark_RELEASE" / "dataset"
    if not (base / "sbd").is_dir() and unpacked.is_dir():
        return unpacked
    return base / "sbd"


def _split_file(name: str, split: str, root: str | Path | None) -> Path:
    folder = dataset_dir(name, root)
    if name == "sbd":
        return folder / f"{split}.txt"
    return folder / "ImageSets" / "Segmentation" / f"{split}.txt"


def _data_dirs(name: str, root: str | Path | None) -> list[tuple[Path, str]]:
    """(folder, file suffix) of the images, then of the labels, of dataset ``name``."""
    folder = dataset_dir(name, root)
    if name == "sbd":
        return [(folder / "img", ".jpg"), (folder / "cls", ".mat")]
    return [(folder / "JPEGImages", ".jpg"), (folder / "SegmentationClass", ".png")]


def _required_paths(name: str, split: str, root: str | Path | None) -> list[Path]:
    data = [d for d, _ in _data_dirs(name, root)]
    return [dataset_dir(name, root), _split_file(name, split, root), *data]


def _missing(name: str, split: str, root: str | Path | None) -> Path | None:
    """The first path that dataset ``name``, split ``split``, needs and lacks (None: complete)."""
    return next((p for p in _required_paths(name, split, root) if not p.exists()), None)


def _absent(name: str, root: str | Path | None, ids: Iterable[str]) -> list[Path]:
    """The image and label files of ``ids`` that are not there: images first, in id order.
    One listing per folder, so checking all of SBD's 11,355 pairs takes milliseconds."""
    out = []
    for folder, suffix in _data_dirs(name, root):
        present = set(os.listdir(folder))
        out += [folder / f"{i}{suffix}" for i in ids if f"{i}{suffix}" not in present]
    return out


def _incomplete(name: str, root: str | Path | None) -> str | None:
    """What dataset ``name`` lacks under ``root``, in words; None when every split list is
    there and lists images, and every image and label the lists name is there."""
    ids: dict[str, None] = {}  # every split's ids, once each, in order
    for split in _SPLITS[name]:
        missing = _missing(name, split, root)
        if missing is not None:
            return f"{missing} does not exist"
        split_file = _split_file(name, split, root)
        try:
            ids |= dict.fromkeys(read_ids(split_file))
        except ValueError:
            return f"the split list {split_file} lists no images"
    absent = _absent(name, root, ids)
    if absent:
        return (
            f"image and label files that its split lists name are missing: {len(absent)} of "
            f"{2 * len(ids)} (e.g. {absent[0]})"
        )
    return None


def _fetch_command(name: str, root: str | Path | None) -> str:
    return f"python -m fcnlib data fetch {name} --root {shlex.quote(str(data_root(root)))}"


def _refetch(name: str, root: str | Path | None) -> str:
    """What to do about a missing part of dataset ``name``: fetch it again."""
    return (
        f"Unpack the dataset again (fetch downloads it only if its archive is gone):\n"
        f"    {_fetch_command(name, root)}"
    )


def _not_found(name: str, split: str, root: str | Path | None) -> DatasetNotFoundError:
    missing = _missing(name, split, root)
    return DatasetNotFoundError(
        f"{_TITLES[name]} ({split!r} split) was not found: {missing} does not exist.\n"
        f"Looked under the data root {data_root(root)} (the root= argument, else $FCN_DATA).\n"
        f"Download it ({_SIZES[name]}, once) with\n"
        f"    {_fetch_command(name, root)}\n"
        f"or pass download=True."
    )


def _require(name: str, split: str, root: str | Path | None) -> None:
    if _missing(name, split, root) is not None:
        raise _not_found(name, split, root)


def fetch(name: str, root: str | Path | None = None) -> Path:
    """Download and unpack dataset ``name`` (one of :data:`DATASETS`) unless it is complete.

    Complete means: every split list is there and names images, and every image and label it
    names is there. Anything less (a download or an unpacking that was cut short, files
    removed since) is unpacked again, from the archive if it is still there (torchvision
    verifies its MD5 checksum first) or from a new download; an incomplete SBD folder's
    unpacked parts are replaced. Returns the dataset's directory (:func:`dataset_dir`).

    Raises:
        ValueError: for an unknown name.
        PermissionError: if the data root is not writable (choose another one).
        DatasetNotFoundError: if the data is still incomplete after the download, saying what
            is missing and what to do.
    """
    _check_name(name)
    base = data_root(root)
    if _incomplete(name, base) is None:
        return dataset_dir(name, base)
    writable_dir(base, f"the {_TITLES[name]} download ({_SIZES[name]})")
    _download(name, base)
    problem = _incomplete(name, base)
    if problem is not None:
        raise DatasetNotFoundError(
            f"{_TITLES[name]} is still incomplete after downloading and unpacking it under "
            f"{base}: {problem}.\nThe archive's checksum was verified, so the unpacking did "
            f"not finish: check that the disk holding {base} has {_SIZES[name]} free, then "
            f"run\n    {_fetch_command(name, base)}\nagain. If that does not help, delete "
            f"{dataset_dir(name, base)} first."
        )
    return dataset_dir(name, base)


# What torchvision's SBDataset moves out of the unpacked archive into the SBD folder; it stops
# with an error if one is already there, so the parts of an incomplete folder go first.
_SBD_PARTS = ("cls", "img", "inst", "train.txt", "val.txt")


def _download(name: str, base: Path) -> None:
    """Download (unless the archive is there and MD5-checked) and unpack with torchvision."""
    where = f"{_TITLES[name]} ({_SIZES[name]}) under {base}"
    try:
        if name == "sbd":
            folder = base / "sbd"
            for part in (folder / p for p in _SBD_PARTS):
                if part.is_dir():
                    shutil.rmtree(part)
                else:
                    part.unlink(missing_ok=True)
            folder.mkdir(exist_ok=True)
            torchvision.datasets.SBDataset(folder, mode="segmentation", download=True)
        else:
            torchvision.datasets.VOCSegmentation(base, year=name[3:], download=True)
    except URLError as e:
        raise OSError(
            f"could not download {where}: {e.reason}. Check the internet connection, then run "
            f"{_fetch_command(name, base)} again."
        ) from e
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        full = e.errno == errno.ENOSPC
        fix = f"Free {_SIZES[name]} on that disk" if full else "Make it writable"
        raise type(e)(
            f"could not download and unpack {where}: {e.strerror} ({e.filename}). {fix}, or "
            f"choose another data root with --root (Python: root=) or $FCN_DATA."
        ) from e
    except RuntimeError as e:
        if "File not found or corrupted" not in str(e):  # torchvision's failed MD5 check
            raise
        raise RuntimeError(
            f"could not download {where}: {e} The archive does not match its MD5 checksum (a "
            f"download cut short, or a proxy's page instead of the file). Run "
            f"{_fetch_command(name, base)} again: it downloads the archive anew."
        ) from e


# --------------------------------------------------------------------------------------------
# Id lists and the seg11valid split.
# --------------------------------------------------------------------------------------------


def voc_ids(
    split: str = "val", *, year: str | int = "2012", root: str | Path | None = None
) -> list[str]:
    """The image ids of a VOC segmentation split (``train``, ``val`` or ``trainval``)."""
    name = f"voc{check_year(year)}"
    split = check_choice("split", split, _VOC_SPLITS)
    return _read_split(name, split, root)


def sbd_ids(split: str = "train", *, root: str | Path | None = None) -> list[str]:
    """The image ids of an SBD split (``train`` or ``val``)."""
    split = check_choice("split", split, _SBD_SPLITS)
    return _read_split("sbd", split, root)


def _read_split(name: str, split: str, root: str | Path | None) -> list[str]:
    _require(name, split, root)
    return read_ids(_split_file(name, split, root), fix=_refetch(name, root))


def seg11valid_ids(root: str | Path | None = None) -> list[str]:
    """VOC 2011 ``val`` minus SBD ``train``, in VOC's order: the paper's 736 validation images.

    Needs both id lists on disk (VOC 2011 and SBD); on the real data the result has 736 ids.
    """
    in_sbd_train = set(sbd_ids("train", root=root))
    return [i for i in voc_ids("val", year="2011", root=root) if i not in in_sbd_train]


def _read_voc_label(path: Path) -> np.ndarray:
    """A VOC palette PNG's pixel values, the class ids: uint8 (H, W) (mode P or L)."""
    with Image.open(path) as im:
        return np.array(im)


def _read_sbd_label(path: Path, sample: str, fix: str) -> np.ndarray:
    """SBD's ``GTcls.Segmentation`` (as torchvision's SBDataset reads it): uint8 (H, W)."""
    gtcls = load_mat(path, "GTcls", sample, fix)
    try:
        return np.asarray(gtcls[0]["Segmentation"][0])
    except (IndexError, KeyError, ValueError) as e:  # not a struct with that field
        raise ValueError(
            f"sample {sample!r}: the label file {path} holds a GTcls without a Segmentation "
            f"field, so it is not an SBD label. {fix}"
        ) from e


# --------------------------------------------------------------------------------------------
# Datasets.
# --------------------------------------------------------------------------------------------


class _Segmentation(PairDataset):
    """Shared part: the file lists of a torchvision dataset, an id filter, checked reading."""

    def __init__(
        self, name: str, tv_dataset: Any, ids: Iterable[str] | None, transforms: Transforms | None
    ) -> None:
        # torchvision's dataset supplies the file lists; the files are read here, so that a bad
        # one is named (torchvision's __getitem__ would raise PIL's or SciPy's bare message).
        self._name = name
        split_file = _split_file(name, self.split, self.root)
        listed = read_ids(split_file, fix=self._refetch())
        files = zip(tv_dataset.images, tv_dataset.masks, strict=True)
        self._files = {Path(image).stem: (Path(image), Path(mask)) for image, mask in files}
        if ids is not None:
            listed = _select(listed, ids, split_file)
        absent = _absent(name, self.root, listed)
        if absent:
            raise DatasetNotFoundError(
                f"{_TITLES[name]} ({self.split!r} split) is incomplete, image and label files "
                f"missing: {len(absent)} of {2 * len(listed)} (e.g. {absent[0]}).\n"
                f"{self._refetch()}\nor leave the images without files out with ids=."
            )
        super().__init__(listed, transforms, [split_file])

    def _read_label(self, path: Path, name: str, fix: str) -> np.ndarray:
        raise NotImplementedError

    def _refetch(self) -> str:
        return _refetch(self._name, self.root)

    def _fix(self, name: str) -> str:
        return (
            f"Restore it from the dataset's archive (delete it first if it is damaged: fetch "
            f"unpacks again what is missing) with\n    {_fetch_command(self._name, self.root)}\n"
            f"or leave {name!r} out with ids=."
        )

    def _load(self, name: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_path, label_path = self._files[name]
        fix = self._fix(name)
        image = decode(image_path, read_rgb, name, fix)  # uint8 (3, H, W)
        label = self._read_label(label_path, name, fix)  # (H, W)
        check_size(name, (label_path, label.shape), (image_path, image.shape), fix)
        n = len(VOC_CLASSES)
        expected = f"0..{n - 1} (the {n} VOC classes) or {IGNORE_INDEX} (void)"
        check_ids(
            name, label, label_path, (0, n - 1), void=IGNORE_INDEX, expected=expected, fix=fix
        )
        return as_tv_tensors(image, label)


def _select(listed: list[str], ids: Iterable[str], split_file: Path) -> list[str]:
    """The ids of ``listed`` that are in ``ids``, in ``listed``'s order; ValueError for ids
    that the split list does not name, or none at all."""
    if isinstance(ids, str):
        raise TypeError(f"ids must be a list of image ids, got the string {ids!r}: pass [{ids!r}]")
    keep = set(ids)
    unknown = sorted(keep - set(listed), key=str)
    if unknown:
        raise ValueError(
            f"{len(unknown)} of the ids= are not in this split (the list {split_file}), e.g. "
            f"{unknown[0]!r}; ids are strings such as {listed[0]!r}"
        )
    selected = [name for name in listed if name in keep]
    if not selected:
        raise ValueError(f"ids= is empty: pass at least one image id of {split_file}")
    return selected


class VOCSegmentation(_Segmentation):
    """PASCAL VOC 2011/2012 segmentation, via ``torchvision.datasets.VOCSegmentation``.

    Args:
        split: ``"train"``, ``"val"`` or ``"trainval"``.
        year: ``"2012"`` or ``"2011"``.
        root: data root (default ``$FCN_DATA``); the data is in ``dataset_dir("voc2012", root)``.
        transforms: callable on an ``(image, label)`` pair, e.g. :func:`train_transform`; it
            receives ``tv_tensors.Image`` (uint8) and ``tv_tensors.Mask``, so any v2 transform
            works. Its output is converted to float32 / int64.
        download: fetch the data first if it is not there (see :func:`fetch`).
        ids: keep only these image ids (in the split's order).

    Raises:
        DatasetNotFoundError: if the data is absent (and ``download`` is False), or image or
            label files of the split are missing; the message says how to unpack them again.
        ValueError: for a split list that names no image, or ``ids`` it does not name; on
            reading an item whose label is not the image's size or holds a class id other
            than 0..20 and 255; the message names the sample and the file.
        OSError: on reading an item whose image or label file does not decode (empty,
            truncated, corrupt; FileNotFoundError: removed since), naming the file.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        year: str | int = "2012",
        root: str | Path | None = None,
        transforms: Callable[[Any, Any], Pair] | None = None,
        download: bool = False,
        ids: Iterable[str] | None = None,
    ) -> None:
        self.year = check_year(year)
        self.split = check_choice("split", split, _VOC_SPLITS)
        self.root = data_root(root)
        name = f"voc{self.year}"
        if download:
            fetch(name, self.root)
        _require(name, split, self.root)
        tv = torchvision.datasets.VOCSegmentation(self.root, year=self.year, image_set=split)
        super().__init__(name, tv, ids, transforms)

    def _read_label(self, path: Path, name: str, fix: str) -> np.ndarray:
        return decode(path, _read_voc_label, name, fix)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(year={self.year!r}, split={self.split!r}, "
            f"n={len(self)}, root={str(self.root)!r})"
        )


class SBDSegmentation(_Segmentation):
    """SBD's segmentation labels, via ``torchvision.datasets.SBDataset(mode="segmentation")``.

    Args:
        split: ``"train"`` (8,498 images) or ``"val"`` (2,857).
        root: data root (default ``$FCN_DATA``); the data is in ``dataset_dir("sbd", root)``.
        transforms, download, ids: as for :class:`VOCSegmentation`.

    Raises:
        DatasetNotFoundError: if the data is absent (and ``download`` is False).
        ValueError, OSError: on reading a bad item, as :class:`VOCSegmentation`.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        root: str | Path | None = None,
        transforms: Callable[[Any, Any], Pair] | None = None,
        download: bool = False,
        ids: Iterable[str] | None = None,
    ) -> None:
        self.split = check_choice("split", split, _SBD_SPLITS)
        self.root = data_root(root)
        if download:
            fetch("sbd", self.root)
        _require("sbd", split, self.root)
        folder = dataset_dir("sbd", self.root)
        tv = torchvision.datasets.SBDataset(folder, image_set=split, mode="segmentation")
        super().__init__("sbd", tv, ids, transforms)

    def _read_label(self, path: Path, name: str, fix: str) -> np.ndarray:
        return _read_sbd_label(path, name, fix)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, root={str(self.root)!r})"
        )


class Seg11Valid(VOCSegmentation):
    """The paper's validation set: VOC 2011 ``val`` images that are not in SBD ``train``.

    Needs VOC 2011 and SBD on disk (of SBD, only ``train.txt`` is read). Arguments as for
    :class:`VOCSegmentation`; ``download=True`` fetches both.
    """

    def __init__(
        self,
        *,
        root: str | Path | None = None,
        transforms: Callable[[Any, Any], Pair] | None = None,
        download: bool = False,
    ) -> None:
        if download:
            fetch("voc2011", root)
            fetch("sbd", root)
        absent = [
            (n, sp) for n, sp in (("voc2011", "val"), ("sbd", "train")) if _missing(n, sp, root)
        ]
        if len(absent) == 2:  # say both at once: both downloads are needed
            raise DatasetNotFoundError(
                "seg11valid needs VOC 2011 and SBD, and neither was found:\n"
                + "\n".join(str(_not_found(n, sp, root)) for n, sp in absent)
            )
        ids = seg11valid_ids(root)
        super().__init__("val", year="2011", root=root, transforms=transforms, ids=ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, root={str(self.root)!r})"


TRAIN_SETS = ("sbd", "voc2011", "voc2012")  # what paper_datasets() can train on


def paper_datasets(
    train: str = "sbd",
    *,
    root: str | Path | None = None,
    crop: int | None = 500,
    scale: tuple[float, float] | None = None,
    mirror: bool = False,
    shift: int | None = None,
    download: bool = False,
    compact: bool = False,
) -> tuple[Dataset, Seg11Valid]:
    """The paper's full-scale experiment: ``(training set, seg11valid)``.

    As the paper's final nets, the training set has no augmentation unless asked for (``mirror``,
    ``shift``, ``scale``); only the random crop that lets images of different sizes batch.

    Args:
        train: ``"sbd"`` (SBD ``train``, 8,498 images: the paper's and the official recipe's
            training set), ``"voc2011"`` or ``"voc2012"`` (VOC ``train``). Training images that
            are also in seg11valid are dropped from training, with a warning, so that
            validation never grades an image the net was trained on.
        root: data root (default ``$FCN_DATA``).
        crop: side of the random training crop, so that images batch together (smaller images
            are padded: image 0, label 255); ``None`` keeps whole images (batch size 1, as the
            official recipe).
        scale: random rescaling range, e.g. ``(0.5, 2.0)``; ``None`` (default): none. The
            paper did not try scale jitter.
        mirror: random left-right flips. Off by default: the paper tried mirroring and found
            no noticeable gain, so its final nets train without it.
        shift: random translation by up to this many pixels (the paper tried 32, no noticeable
            gain); ``None`` (default): none.
        download: fetch what is missing first (VOC 2011 and SBD, plus VOC 2012 if asked).
        compact: items as decoded, uint8 images and labels, converted on the device by
            :func:`fcnlib.train.fit` (a fifth of the bytes through the DataLoader; see
            :class:`PairTransform`). ``python -m fcnlib train --data voc`` uses it.

    Validation images keep their own sizes: evaluate them one at a time (batch size 1).
    """
    if train not in TRAIN_SETS:
        raise ValueError(f"train must be one of {TRAIN_SETS}, got {train!r}")
    val = Seg11Valid(root=root, transforms=eval_transform(compact=compact), download=download)
    if download and train == "voc2012":
        fetch("voc2012", root)
    ids = sbd_ids("train", root=root) if train == "sbd" else voc_ids("train", year=train[3:],
                                                                      root=root)  # fmt: skip
    shared = set(ids) & set(val.ids)
    if shared == set(ids):
        raise ValueError(
            f"all {len(ids)} {train} training images are in seg11valid, the validation set: "
            f"none is left to train on. Train on another set (train=)."
        )
    if shared:
        warnings.warn(
            f"{len(shared)} of the {len(ids)} {train} training images are also in seg11valid; "
            "they are left out of training",
            stacklevel=2,
        )
        ids = [i for i in ids if i not in shared]
    transforms = train_transform(crop, scale, mirror=mirror, shift=shift, compact=compact)
    if train == "sbd":
        data = SBDSegmentation("train", root=root, transforms=transforms, ids=ids)
    else:
        data = VOCSegmentation("train", year=train[3:], root=root, transforms=transforms, ids=ids)
    return data, val

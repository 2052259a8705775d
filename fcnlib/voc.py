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
An SBD archive unpacked by hand, as ``root/benchmark_RELEASE/dataset``, is found as well.

The root directory defaults to :func:`fcnlib.config.data_dir` (``$FCN_DATA``).

Items
-----
Every dataset here yields ``(image, label)`` in the convention of
:class:`fcnlib.data.ShapesDataset`: ``image`` float32 (3, H, W) in [0, 1], ``label`` int64 (H, W)
holding 0..20 or 255 (void). ``transforms`` act jointly on the pair, so that a mirrored image
gets a mirrored label: see :func:`train_transform` and :func:`eval_transform`. Each item is
checked as it is read: a label of another size than its image, a class id outside 0..20 other
than 255, or a file that does not decode raises an error naming the sample and the file.
A transform made with ``compact=True`` (:func:`paper_datasets` passes it on) leaves items as
decoded instead, uint8 image and label, for :func:`fcnlib.train.fit` to convert on the device.

Offline, :func:`write_fake_voc` and :func:`write_fake_sbd` write tiny random datasets in exactly
the real on-disk formats, so the same code runs in tests and CI::

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> _ = write_fake_voc(root, n_train=2, n_val=1, size=(24, 32))
    >>> image, label = VOCSegmentation("train", root=root)[0]
    >>> image.shape, image.dtype, label.shape, label.dtype
    (torch.Size([3, 24, 32]), torch.float32, torch.Size([24, 32]), torch.int64)
"""

from __future__ import annotations

import shlex
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from fcnlib.config import data_dir
from fcnlib.data import IGNORE_INDEX
from fcnlib.infer import save_label_png
from fcnlib.viz import voc_palette

__all__ = [
    "DATASETS",
    "SPLIT_SIZES",
    "TRAIN_SETS",
    "VOC_CLASSES",
    "DatasetNotFoundError",
    "FakeData",
    "PairTransform",
    "RandomScale",
    "RandomShift",
    "SBDSegmentation",
    "Seg11Valid",
    "VOCSegmentation",
    "as_tv_tensors",
    "dataset_dir",
    "eval_transform",
    "fetch",
    "paper_datasets",
    "read_ids",
    "sbd_ids",
    "seg11valid_ids",
    "to_tensors",
    "train_transform",
    "voc_ids",
    "write_fake_sbd",
    "write_fake_voc",
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
_TITLES = {"voc2012": "PASCAL VOC 2012", "voc2011": "PASCAL VOC 2011", "sbd": "SBD"}
_SIZES = {"voc2012": "about 2 GB", "voc2011": "about 1.7 GB", "sbd": "about 1.4 GB"}

Pair = tuple[Any, Any]


# --------------------------------------------------------------------------------------------
# Where the data lives, and a clear error when it does not.
# --------------------------------------------------------------------------------------------


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk. The message says what is missing, where, and how to fetch it."""


def _root(root: str | Path | None) -> Path:
    return (data_dir() if root is None else Path(root)).expanduser().resolve()


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {DATASETS}")
    return name


def _voc_year(year: str | int) -> str:
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
    base = _root(root)
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


def _required_paths(name: str, split: str, root: str | Path | None) -> list[Path]:
    folder = dataset_dir(name, root)
    data = ["img", "cls"] if name == "sbd" else ["JPEGImages", "SegmentationClass"]
    return [folder, _split_file(name, split, root), *(folder / d for d in data)]


def _missing(name: str, split: str, root: str | Path | None) -> Path | None:
    """The first path that dataset ``name``, split ``split``, needs and lacks (None: complete)."""
    return next((p for p in _required_paths(name, split, root) if not p.exists()), None)


def _fetch_command(name: str, root: str | Path | None) -> str:
    return f"python -m fcnlib data fetch {name} --root {shlex.quote(str(_root(root)))}"


def _not_found(name: str, split: str, root: str | Path | None) -> DatasetNotFoundError:
    missing = _missing(name, split, root)
    return DatasetNotFoundError(
        f"{_TITLES[name]} ({split!r} split) was not found: {missing} does not exist.\n"
        f"Looked under the data root {_root(root)} (the root= argument, else $FCN_DATA).\n"
        f"Download it ({_SIZES[name]}, once) with\n"
        f"    {_fetch_command(name, root)}\n"
        f"or pass download=True."
    )


def _require(name: str, split: str, root: str | Path | None) -> None:
    if _missing(name, split, root) is not None:
        raise _not_found(name, split, root)


def fetch(name: str, root: str | Path | None = None) -> Path:
    """Download and unpack dataset ``name`` (one of :data:`DATASETS`) unless already there.

    Uses torchvision's downloaders, which verify the archive's MD5 before unpacking. Returns the
    dataset's directory (:func:`dataset_dir`).

    Raises:
        ValueError: for an unknown name.
        DatasetNotFoundError: if the data is still incomplete after the download.
    """
    _check_name(name)
    splits = _SBD_SPLITS if name == "sbd" else _VOC_SPLITS
    if all(_missing(name, s, root) is None for s in splits):
        return dataset_dir(name, root)
    base = _root(root)
    base.mkdir(parents=True, exist_ok=True)
    if name == "sbd":
        (base / "sbd").mkdir(exist_ok=True)
        torchvision.datasets.SBDataset(base / "sbd", mode="segmentation", download=True)
    else:
        year = name.removeprefix("voc")
        torchvision.datasets.VOCSegmentation(base, year=year, download=True)
    for split in splits:
        _require(name, split, root)
    return dataset_dir(name, root)


# --------------------------------------------------------------------------------------------
# Id lists and the seg11valid split.
# --------------------------------------------------------------------------------------------


def read_ids(path: str | Path) -> list[str]:
    """Image ids listed in a split file, one per line, in file order (blank lines skipped)."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def voc_ids(
    split: str = "val", *, year: str | int = "2012", root: str | Path | None = None
) -> list[str]:
    """The image ids of a VOC segmentation split (``train``, ``val`` or ``trainval``)."""
    name = f"voc{_voc_year(year)}"
    split = _check_split(split, _VOC_SPLITS)
    _require(name, split, root)
    return read_ids(_split_file(name, split, root))


def sbd_ids(split: str = "train", *, root: str | Path | None = None) -> list[str]:
    """The image ids of an SBD split (``train`` or ``val``)."""
    split = _check_split(split, _SBD_SPLITS)
    _require("sbd", split, root)
    return read_ids(_split_file("sbd", split, root))


def seg11valid_ids(root: str | Path | None = None) -> list[str]:
    """VOC 2011 ``val`` minus SBD ``train``, in VOC's order: the paper's 736 validation images.

    Needs both id lists on disk (VOC 2011 and SBD); on the real data the result has 736 ids.
    """
    in_sbd_train = set(sbd_ids("train", root=root))
    return [i for i in voc_ids("val", year="2011", root=root) if i not in in_sbd_train]


def _check_split(split: str, valid: Sequence[str]) -> str:
    if split not in valid:
        raise ValueError(f"split must be one of {tuple(valid)}, got {split!r}")
    return split


# --------------------------------------------------------------------------------------------
# Conversions between PIL / NumPy / tv_tensors and fcnlib's (float image, int64 label) pairs.
# --------------------------------------------------------------------------------------------


def as_tv_tensors(image: Any, label: Any) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Wrap a pair as ``(tv_tensors.Image, tv_tensors.Mask)`` so v2 transforms treat them right.

    ``image``: PIL image, (H, W, 3) array or (3, H, W) tensor (uint8 or float).
    ``label``: PIL image (palette or greyscale), (H, W) array or tensor; dtype is kept.
    """
    if isinstance(image, Image.Image):
        image = TF.pil_to_tensor(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if isinstance(label, Image.Image):
        label = np.array(label)  # a writable copy
    label = torch.as_tensor(label)
    if label.dim() == 3 and label.shape[0] == 1:
        label = label[0]
    if image.dim() != 3 or label.dim() != 2 or image.shape[-2:] != label.shape:
        raise ValueError(
            f"expected image (3, H, W) and label (H, W) of the same size, got "
            f"{tuple(image.shape)} and {tuple(label.shape)}"
        )
    return tv_tensors.Image(image), tv_tensors.Mask(label)


def to_tensors(image: Any, label: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair in fcnlib's convention: float32 (3, H, W) in [0, 1] and int64 (H, W)."""
    image, label = as_tv_tensors(image, label)
    image = TF.to_dtype(image, torch.float32, scale=True)
    return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor).long()


# --------------------------------------------------------------------------------------------
# Joint transforms.
# --------------------------------------------------------------------------------------------


class RandomScale:
    """Resize an (Image, Mask) pair by a factor drawn uniformly from ``scale``.

    The image is interpolated bilinearly (antialiased when shrinking), the mask with nearest
    neighbour so that it only ever holds values it held before (255 stays 255). The factor comes
    from torch's global generator, so ``torch.manual_seed`` makes it reproducible.
    """

    def __init__(self, scale: tuple[float, float] = (0.5, 2.0)) -> None:
        lo, hi = scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale!r}")
        self.scale = (float(lo), float(hi))

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> Pair:
        lo, hi = self.scale
        factor = lo + (hi - lo) * float(torch.rand(()))
        h, w = image.shape[-2:]
        size = [max(1, round(h * factor)), max(1, round(w * factor))]
        if size == [h, w]:
            return image, mask
        image = TF.resize(image, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        mask = TF.resize(mask, size, interpolation=v2.InterpolationMode.NEAREST)
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"


class RandomShift:
    """Translate an (Image, Mask) pair by up to ``max_shift`` pixels in each direction.

    The paper's "jittering" (section 4.3 tried shifts of up to 32 pixels, the coarsest output
    stride, and found no noticeable gain). The offsets ``dy, dx`` are drawn uniformly from
    ``-max_shift .. max_shift`` with torch's global generator; the pair keeps its size, and what
    moves in at the border is padding: 0 in the image, 255 (void) in the label, so the loss
    ignores it. ``image[:, y, x]`` lands at ``(y + dy, x + dx)``.
    """

    def __init__(self, max_shift: int = 32) -> None:
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"max_shift must be a whole number of pixels >= 0, got {max_shift!r}")
        self.max_shift = max_shift

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask) -> Pair:
        s = self.max_shift
        dy, dx = (int(v) for v in torch.randint(-s, s + 1, (2,)))
        if dy == 0 and dx == 0:
            return image, mask
        h, w = image.shape[-2:]
        image = TF.pad(image, [s, s, s, s], fill=0)  # left, top, right, bottom
        mask = TF.pad(mask, [s, s, s, s], fill=IGNORE_INDEX)
        top, left = s - dy, s - dx
        return TF.crop(image, top, left, h, w), TF.crop(mask, top, left, h, w)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_shift={self.max_shift})"


class PairTransform:
    """Apply a v2 pipeline jointly to an ``(image, label)`` pair, return fcnlib's convention.

    Accepts what :func:`as_tv_tensors` accepts; returns ``(float32 image, int64 label)``, or
    with ``compact=True`` the pair as decoded (uint8 image 0-255, label in its decoded integer
    dtype, uint8 for VOC and SBD): a fifth of the bytes for DataLoader workers to hand over.
    :func:`fcnlib.train.fit` and :func:`fcnlib.train.evaluate` convert such batches on the
    device (:func:`fcnlib.train.batch_to`), bit for bit as the float pair would have been.
    """

    def __init__(self, steps: Sequence[Callable[..., Any]] = (), *, compact: bool = False) -> None:
        self.pipeline = v2.Compose(list(steps) or [v2.Identity()])
        self.compact = bool(compact)

    def __call__(self, image: Any, label: Any) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = as_tv_tensors(image, label)
        image, label = self.pipeline(image, label)
        if self.compact:
            return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor)
        return to_tensors(image, label)

    def __repr__(self) -> str:
        extra = ", compact=True" if self.compact else ""
        return f"{type(self).__name__}({self.pipeline}{extra})"


def train_transform(
    crop: int | tuple[int, int] | None = 500,
    scale: tuple[float, float] | None = (0.5, 2.0),
    *,
    mirror: bool = True,
    shift: int | None = None,
    compact: bool = False,
) -> PairTransform:
    """Training augmentation: random scale, random shift, random horizontal mirror, random crop.

    Args:
        crop: side (or (H, W)) of the random crop; images smaller than that are padded first,
            the image with 0 and the label with 255 (void, so the padding costs nothing).
            ``None``: no crop, sizes vary.
        scale: range of the random resize factor; ``None``: no rescaling.
        mirror: flip left-right with probability 1/2.
        shift: translate by up to this many pixels each way (:class:`RandomShift`, the paper's
            jittering); ``None``: no shift.
        compact: hand over uint8 images and labels as decoded (see :class:`PairTransform`).

    All randomness comes from torch's global generator (``torch.manual_seed``). The paper's
    final nets trained with none of it: :func:`paper_datasets` switches scale, shift and mirror
    off unless asked.
    """
    steps: list[Callable[..., Any]] = []
    if scale is not None:
        steps.append(RandomScale(scale))
    if shift:
        steps.append(RandomShift(shift))
    if mirror:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if crop is not None:
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
        steps.append(v2.RandomCrop(crop, pad_if_needed=True, fill=fill))
    return PairTransform(steps, compact=compact)


def eval_transform(*, compact: bool = False) -> PairTransform:
    """No augmentation: the whole image at its own size, as the paper evaluates.
    ``compact``: as decoded, uint8 (see :class:`PairTransform`)."""
    return PairTransform(compact=compact)


# --------------------------------------------------------------------------------------------
# Reading one sample, with errors that name the file: a dataset of thousands of images is only
# as good as its worst file, and "image file is truncated" alone does not say which one that is.
# --------------------------------------------------------------------------------------------


def _decode(path: Path, read: Callable[[Path], Any], sample: str, fix: str) -> Any:
    """``read(path)``; a file that does not decode raises OSError naming it and the sample."""
    try:
        return read(path)
    except (FileNotFoundError, MemoryError):
        raise  # already say what they are (a missing file names itself)
    except Exception as e:  # decoders raise OSError, ValueError, IndexError, SyntaxError, ...
        raise OSError(
            f"sample {sample!r}: could not decode {path} ({type(e).__name__}: {e}). The file "
            f"is truncated or corrupt. {fix}"
        ) from e


def _read_rgb(path: Path) -> torch.Tensor:
    """uint8 (3, H, W) from a JPEG or PNG file (decoded in full, so truncation shows here)."""
    with Image.open(path) as im:
        return TF.pil_to_tensor(im.convert("RGB"))


def _check_size(
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
        raise ValueError(
            f"sample {sample!r}: the {what} {label_path} has shape {tuple(label_shape)}, but "
            f"the image {image_path} is {h}x{w} (H x W): expected shape ({h}, {w}), one value "
            f"per pixel of that image. {fix}"
        )


def _check_ids(
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


def _read_voc_label(path: Path) -> np.ndarray:
    """A VOC palette PNG's pixel values, the class ids: uint8 (H, W) (mode P or L)."""
    with Image.open(path) as im:
        return np.array(im)


def _read_sbd_label(path: Path) -> np.ndarray:
    """SBD's ``GTcls.Segmentation`` (as torchvision's SBDataset reads it): uint8 (H, W)."""
    from scipy.io import loadmat

    return np.asarray(loadmat(path)["GTcls"][0]["Segmentation"][0])


# --------------------------------------------------------------------------------------------
# Datasets.
# --------------------------------------------------------------------------------------------


class _Segmentation(Dataset):
    """Shared part: a torchvision dataset (yielding PIL pairs), an id filter, joint transforms."""

    def __init__(
        self,
        tv_dataset: Any,
        ids: Iterable[str] | None,
        transforms: Callable[[Any, Any], Pair] | None,
    ) -> None:
        self._tv = tv_dataset
        all_ids = [Path(p).stem for p in tv_dataset.images]
        if ids is None:
            self._index = list(range(len(all_ids)))
        else:
            keep = set(ids)
            unknown = keep - set(all_ids)
            if unknown:
                raise ValueError(f"{len(unknown)} ids are not in this split, e.g. {min(unknown)!r}")
            self._index = [i for i, name in enumerate(all_ids) if name in keep]
        self.ids = [all_ids[i] for i in self._index]
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self._index)

    def _read_label(self, path: Path) -> np.ndarray:
        raise NotImplementedError

    def _fix(self, sample: str) -> str:
        return (
            f"Replace the file with a good copy (download the dataset again), or leave "
            f"{sample!r} out with ids=."
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        # torchvision's dataset supplies the file lists; the files are read here, so that a bad
        # one is named (torchvision's __getitem__ would raise PIL's or SciPy's bare message).
        i, name = self._index[index], self.ids[index]
        image_path, label_path = Path(self._tv.images[i]), Path(self._tv.masks[i])
        fix = self._fix(name)
        image = _decode(image_path, _read_rgb, name, fix)  # uint8 (3, H, W)
        label = _decode(label_path, self._read_label, name, fix)  # (H, W)
        _check_size(name, (label_path, label.shape), (image_path, image.shape), fix)
        n = len(VOC_CLASSES)
        expected = f"0..{n - 1} (the {n} VOC classes) or {IGNORE_INDEX} (void)"
        _check_ids(
            name, label, label_path, (0, n - 1), void=IGNORE_INDEX, expected=expected, fix=fix
        )
        image, label = as_tv_tensors(image, label)
        if self.transforms is not None:
            image, label = self.transforms(image, label)
            if getattr(self.transforms, "compact", False):  # PairTransform(compact=True)
                return image, label  # uint8, as decoded: converted on the device
        return to_tensors(image, label)


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
        DatasetNotFoundError: if the data is absent (and ``download`` is False).
        ValueError: on reading an item whose label is not the image's size or holds a class id
            other than 0..20 and 255; the message names the sample and the file.
        OSError: on reading an item whose image or label file does not decode (truncated,
            corrupt), naming the file.
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
        self.year = _voc_year(year)
        self.split = _check_split(split, _VOC_SPLITS)
        self.root = _root(root)
        name = f"voc{self.year}"
        if download:
            fetch(name, self.root)
        _require(name, split, self.root)
        tv = torchvision.datasets.VOCSegmentation(self.root, year=self.year, image_set=split)
        super().__init__(tv, ids, transforms)

    def _read_label(self, path: Path) -> np.ndarray:
        return _read_voc_label(path)

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
        self.split = _check_split(split, _SBD_SPLITS)
        self.root = _root(root)
        if download:
            fetch("sbd", self.root)
        _require("sbd", split, self.root)
        folder = dataset_dir("sbd", self.root)
        tv = torchvision.datasets.SBDataset(folder, image_set=split, mode="segmentation")
        super().__init__(tv, ids, transforms)

    def _read_label(self, path: Path) -> np.ndarray:
        return _read_sbd_label(path)

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


# --------------------------------------------------------------------------------------------
# Fake datasets in the real on-disk formats, for tests and CI.
# --------------------------------------------------------------------------------------------


@dataclass
class FakeData:
    """What a fake-data writer wrote.

    Attributes:
        path: the dataset directory (``dataset_dir(name, root)``).
        splits: split name -> ids, in file order.
        labels: id -> the uint8 (H, W) label written.
        images: id -> the uint8 (H, W, 3) image before JPEG compression.
    """

    path: Path
    splits: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)


def _fake_label(rng: np.random.Generator, size: tuple[int, int], void: bool) -> np.ndarray:
    """Background with 1-3 rectangles of random classes, each outlined by a void band if asked."""
    h, w = size
    label = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, max(1, h - 4))), int(rng.integers(0, max(1, w - 4)))
        y1 = int(rng.integers(y0 + min(4, h - y0), h + 1))
        x1 = int(rng.integers(x0 + min(4, w - x0), w + 1))
        label[y0:y1, x0:x1] = rng.integers(1, len(VOC_CLASSES))
        if void:
            label[y0:y1, [x0, x1 - 1]] = IGNORE_INDEX
            label[[y0, y1 - 1], x0:x1] = IGNORE_INDEX
    return label


def _fake_image(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    """Each pixel the VOC colour of its class, plus a little noise: alignment shows at a glance."""
    colours = voc_palette().numpy().astype(np.int16)
    noise = rng.integers(-12, 13, size=(*label.shape, 3))
    return np.clip(colours[label] + noise, 0, 255).astype(np.uint8)


_CONTENTS = ("colours", "scenes")


def _fake_pair(
    rng: np.random.Generator,
    name: str,
    size: tuple[int, int],
    *,
    content: str,
    void: bool,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(label uint8 (H, W), image uint8 (H, W, 3)) for image id ``name``.

    ``"colours"``: rectangles painted in their class's VOC colour (alignment shows at a glance).
    ``"scenes"``: a lab-bench scene (:class:`fcnlib.data.ShapesDataset`) chosen by the id and
    ``seed`` alone, so an id written into two datasets (VOC 2011 and SBD share images) gets the
    same picture in both; labels are the lab classes 0..6 and void 255.
    """
    if content == "colours":
        label = _fake_label(rng, size, void=void)
        return label, _fake_image(rng, label)
    from fcnlib.data import ShapesDataset

    scene_seed = (zlib.crc32(name.encode()) + 7919 * seed) % 2**31
    image, label = ShapesDataset(
        "train", size=size, seed=scene_seed, length=1, void_width=1 if void else 0
    )[0]
    image = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return label.to(torch.uint8).numpy(), image


def _check_content(content: str) -> str:
    if content not in _CONTENTS:
        raise ValueError(f"content must be one of {_CONTENTS}, got {content!r}")
    return content


def _check_fake_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be a positive (H, W), got {size!r}")
    return h, w


def _write_lines(path: Path, ids: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def write_fake_voc(
    root: str | Path,
    *,
    year: str | int = "2012",
    n_train: int = 4,
    n_val: int = 3,
    size: tuple[int, int] = (32, 48),
    seed: int = 0,
    ids_train: Sequence[str] | None = None,
    ids_val: Sequence[str] | None = None,
    content: str = "colours",
) -> FakeData:
    """Write a tiny random VOC segmentation dataset under ``root``, in VOC's real format.

    JPEG images, palette PNG labels (VOC colour map, void outlines of 255 around each object) and
    the ``train``/``val``/``trainval`` id lists. Ids default to ``'<year>_000000'`` onwards;
    ``ids_train``/``ids_val`` override them (and ``n_train``/``n_val``). ``content`` is
    ``"colours"`` (class-coloured rectangles) or ``"scenes"`` (lab-bench scenes, something
    worth training on; the same id always gets the same scene, see :func:`write_fake_sbd`).
    """
    year = _voc_year(year)
    size = _check_fake_size(size)
    content = _check_content(content)
    rng = np.random.default_rng(seed)
    ids_train, ids_val = _fake_ids(year, ids_train, ids_val, n_train, n_val)
    folder = dataset_dir(f"voc{year}", root)
    out = FakeData(folder, {"train": list(ids_train), "val": list(ids_val)})
    out.splits["trainval"] = sorted({*ids_train, *ids_val})
    for sub in ("JPEGImages", "SegmentationClass"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, ids in out.splits.items():
        _write_lines(folder / "ImageSets" / "Segmentation" / f"{split}.txt", ids)
    for name in out.splits["trainval"]:
        label, image = _fake_pair(rng, name, size, content=content, void=True, seed=seed)
        Image.fromarray(image).save(folder / "JPEGImages" / f"{name}.jpg", quality=95)
        save_label_png(torch.from_numpy(label), folder / "SegmentationClass" / f"{name}.png")
        out.labels[name], out.images[name] = label, image
    return out


def _fake_ids(
    prefix: str,
    ids_train: Sequence[str] | None,
    ids_val: Sequence[str] | None,
    n_train: int,
    n_val: int,
) -> tuple[list[str], list[str]]:
    """The given ids, or VOC-style ``'<prefix>_000000'`` onwards, val numbered after train."""
    if ids_train is None:
        ids_train = [f"{prefix}_{i:06d}" for i in range(n_train)]
    if ids_val is None:
        ids_val = [f"{prefix}_{i:06d}" for i in range(len(ids_train), len(ids_train) + n_val)]
    return list(ids_train), list(ids_val)


def _boundaries(label: np.ndarray) -> np.ndarray:
    """(20, H, W) bool: pixels of class c next to a pixel of another label (SBD's Boundaries)."""
    edge = np.zeros(label.shape, dtype=bool)
    edge[:-1] |= label[:-1] != label[1:]
    edge[1:] |= label[:-1] != label[1:]
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    edge[:, 1:] |= label[:, :-1] != label[:, 1:]
    return np.stack([edge & (label == c) for c in range(1, len(VOC_CLASSES))])


def _write_sbd_mat(path: Path, label: np.ndarray) -> None:
    """Save ``label`` as SBD does: a struct ``GTcls`` with Segmentation, Boundaries, Categories."""
    from scipy.io import savemat
    from scipy.sparse import csc_matrix

    boundaries = np.empty((len(VOC_CLASSES) - 1, 1), dtype=object)
    for c, b in enumerate(_boundaries(label)):
        boundaries[c, 0] = csc_matrix(b)
    present = np.array([c for c in np.unique(label) if 0 < c < len(VOC_CLASSES)], np.uint8)
    gtcls = {
        "Segmentation": label.astype(np.uint8),
        "Boundaries": boundaries,
        "CategoriesPresent": present.reshape(-1, 1),
    }
    savemat(path, {"GTcls": gtcls})


def write_fake_sbd(
    root: str | Path,
    *,
    ids_train: Sequence[str] | None = None,
    ids_val: Sequence[str] | None = None,
    n_train: int = 4,
    n_val: int = 3,
    size: tuple[int, int] = (32, 48),
    seed: int = 0,
    void: bool = False,
    content: str = "colours",
) -> FakeData:
    """Write a tiny random SBD under ``root/sbd``, in SBD's real format.

    JPEG images in ``img/``, labels in ``cls/<id>.mat`` (struct ``GTcls``, written with
    ``scipy.io.savemat``), and ``train.txt``/``val.txt``. Real SBD labels have no void band,
    so neither do these unless ``void=True``. Ids default to ``'2008_000000'`` onwards.
    ``content``: as for :func:`write_fake_voc`; with ``"scenes"`` (and the same ``seed``) an id
    that is also in a fake VOC shows the same scene there, as VOC 2011 and SBD share images.
    """
    size = _check_fake_size(size)
    content = _check_content(content)
    rng = np.random.default_rng(seed)
    ids_train, ids_val = _fake_ids("2008", ids_train, ids_val, n_train, n_val)
    folder = _root(root) / "sbd"
    out = FakeData(folder, {"train": list(ids_train), "val": list(ids_val)})
    for sub in ("img", "cls"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, ids in out.splits.items():
        _write_lines(folder / f"{split}.txt", ids)
    for name in sorted({*ids_train, *ids_val}):
        label, image = _fake_pair(rng, name, size, content=content, void=void, seed=seed)
        Image.fromarray(image).save(folder / "img" / f"{name}.jpg", quality=95)
        _write_sbd_mat(folder / "cls" / f"{name}.mat", label)
        out.labels[name], out.images[name] = label, image
    return out

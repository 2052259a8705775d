"""The paper's other datasets: SIFT Flow, NYUDv2 (RGB-D, with HHA) and PASCAL-Context.

The datasets
------------
* **SIFT Flow** (Liu et al.; :class:`SIFTFlow`): 2,688 outdoor photographs of 256x256 pixels,
  every pixel labelled twice: with one of 33 semantic classes (:data:`SIFTFLOW_CLASSES`) and with
  one of 3 geometric classes (:data:`SIFTFLOW_GEO_CLASSES`: sky, horizontal, vertical). The paper
  splits it into 2,488 training and 200 test images and trains one net with two heads: FCN-16s
  reaches 85.2 pixel accuracy and 39.5 mean IU on the semantic classes, 94.3 pixel accuracy on the
  geometric ones.
* **NYUDv2** (Silberman et al.; :class:`NYUDv2`): 1,449 indoor RGB-D images from a Kinect,
  labelled with the 40 classes of Gupta et al. (:data:`NYUD_CLASSES`), split into 795 training
  (``train`` 381 + ``val`` 414) and 654 test images. Depth enters as raw depth or as Gupta et
  al.'s HHA encoding (:func:`hha`); the paper's best net, FCN-16s fusing an RGB and an HHA
  stream late, reaches 34.0 mean IU and 65.4 pixel accuracy.
* **PASCAL-Context** (Mottaghi et al.; :class:`PascalContext`): every pixel of the PASCAL VOC
  2010 train and val images (10,103) labelled with one of 459 classes; the usual task keeps the
  59 most frequent (:data:`CONTEXT_CLASSES`) and calls the rest background. FCN-8s reaches
  35.1 mean IU on the 59-class task and 53.5 on a 33-class task, which is not implemented here
  (see :class:`PascalContext`).

On disk
-------
All three live under the data root, :func:`fcnlib.config.data_dir` (``$FCN_DATA``), in the
layout the official FCN code (Caffe; github.com/shelhamer/fcn.berkeleyvision.org, its
``*_layers.py`` and ``data/*/README.md``) reads::

    sift-flow/trainval.txt, test.txt                     the FCN split lists (image ids)
    sift-flow/Images/spatial_envelope_256x256_static_8outdoorcategories/<id>.jpg
    sift-flow/SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat   S
    sift-flow/GeoLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat        S
    nyud/train.txt, val.txt, test.txt (trainval.txt)     ids such as 5001
    nyud/data/images/img_<id>.png                        RGB
    nyud/data/depth/img_<id>.png                         depth, 16-bit, millimetres
    nyud/data/hha/img_<id>.png                           HHA, 8-bit, 3 channels
    nyud/segmentation/img_<id>.mat                       segmentation: 0 void, 1..40 classes
    VOCdevkit/VOC2010/JPEGImages/<id>.jpg                VOC 2010 (torchvision's layout;
    VOCdevkit/VOC2010/ImageSets/Main/train.txt, val.txt   pascal/VOC2010, FCN's, also works)
    pascal-context/trainval/<id>.mat                     LabelMap (uint16): 0, 1..459
    pascal-context/labels.txt                            "<raw id>: <name>", one per line

Label conventions, from the official layers: SIFT Flow semantic ``0`` and geometric ``-1`` (or
``0``) are unlabelled, classes start at 1; NYUDv2 ``0`` is void, classes 1..40. Here every
dataset shifts its classes to start at 0 and maps unlabelled pixels to void (255).

Where the data comes from
-------------------------
There is no automatic download for any of them (no archive fcnlib could check); a missing
dataset raises :class:`fcnlib.voc.DatasetNotFoundError` saying what is missing, where it was
looked for and where to get it. The sources the FCN repository names: SIFT Flow's
``SiftFlowDataset.zip`` (data/sift-flow/README.md), the FCN authors' copy of NYUDv2 in the
layout above, ``nyud.tar.gz`` (data/nyud/README.md), and the PASCAL-Context page
(data/pascal-context/README.md); the FCN split lists are in that repository's ``data/`` folders.
The VOC 2010 images can be fetched by torchvision, MD5-checked.

Not verified from sources
-------------------------
The dtypes of SIFT Flow's ``S`` and NYUDv2's ``segmentation`` arrays (the loaders accept any
numeric dtype); the number of ids in the FCN ``sift-flow/trainval.txt`` (its README says it leaves
out unannotated images; ``test.txt`` has 200); the 16-bit millimetre depth PNGs of ``nyud``
(that is how Gupta et al.'s code reads its depth images, and the FCN layer's mean log-depth 7.844
is about log(2,550 mm)); the VOC 2010 split sizes (4,998 ``train``, 5,105 ``val``).

Items
-----
``image`` float32 ``(C, H, W)`` and label(s) int64 ``(H, W)`` with 255 = void, as
:mod:`fcnlib.voc`; ``transforms`` act jointly on image and label(s), e.g.
:func:`fcnlib.voc.train_transform`. Each item is checked as it is read: a label (or a second
image modality) of another size than the image, a raw class id the dataset does not define, or a
file that does not decode raises an error naming the sample and the file (ValueError, OSError).
Offline, :func:`write_fake_siftflow`, :func:`write_fake_nyud` and :func:`write_fake_context`
write tiny datasets in the real formats::

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> _ = write_fake_siftflow(root, n_trainval=2, n_test=1, size=(16, 16))
    >>> image, semantic, geometric = SIFTFlow("trainval", root=root, task="both")[0]
    >>> image.shape, semantic.shape, geometric.dtype
    (torch.Size([3, 16, 16]), torch.Size([16, 16]), torch.int64)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from fcnlib import voc
from fcnlib.data import IGNORE_INDEX
from fcnlib.viz import voc_palette
from fcnlib.voc import (
    DatasetNotFoundError,
    PairTransform,
    _check_ids,
    _check_size,
    _decode,
    _read_rgb,
    _root,
    _write_lines,
)
from fcnlib.voc import _check_fake_size as _fake_size
from fcnlib.voc import read_ids as _read_ids

__all__ = [
    "CONTEXT_CLASSES",
    "LEVEL",
    "NYUD_CLASSES",
    "NYUD_INTRINSICS",
    "NYUD_MODALITIES",
    "SIFTFLOW_CLASSES",
    "SIFTFLOW_GEO_CLASSES",
    "SPLIT_SIZES",
    "FakeData",
    "Intrinsics",
    "NYUDv2",
    "PascalContext",
    "SIFTFlow",
    "hha",
    "write_fake_context",
    "write_fake_nyud",
    "write_fake_siftflow",
]

# Class lists in the order of the official data/*/classes*.txt: label c is CLASSES[c].
SIFTFLOW_CLASSES = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk",
    "desert", "door", "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole",
    "river", "road", "rock", "sand", "sea", "sidewalk", "sign", "sky", "staircase",
    "streetlight", "sun", "tree", "window",
)  # fmt: skip
SIFTFLOW_GEO_CLASSES = ("sky", "horizontal", "vertical")
# NYUDv2: "refridgerator" (sic) as in the official list.
NYUD_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip
# PASCAL-Context, the 59-class task: 0 is everything else.
CONTEXT_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor", "bag", "bed", "bench", "book", "building", "cabinet", "ceiling",
    "clothes", "computer", "cup", "door", "fence", "floor", "flower", "food", "grass", "ground",
    "keyboard", "light", "mountain", "mouse", "curtain", "platform", "sign", "plate", "road",
    "rock", "shelves", "sidewalk", "sky", "snow", "bedcloth", "track", "tree", "truck", "wall",
    "water", "window", "wood",
)  # fmt: skip

# Three task names differ from the raw names in labels.txt (as the official layer renames them).
_CONTEXT_RAW_NAMES = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}

NYUD_MODALITIES = ("rgb", "depth", "hha", "rgbd", "rgb-hha")

SPLIT_SIZES: dict[str, dict[str, int]] = {
    "siftflow": {"test": 200},  # trainval: the paper's 2,488 training images (list not counted)
    "nyud": {"train": 381, "val": 414, "trainval": 795, "test": 654},
    "context": {"train": 4998, "val": 5105},  # VOC 2010 Main lists, from secondary sources
}

_SIFTFLOW_DIR, _NYUD_DIR, _CONTEXT_DIR = "sift-flow", "nyud", "pascal-context"
_SCENES = "spatial_envelope_256x256_static_8outdoorcategories"  # SIFT Flow's sub-folder
_FCN_REPO = "https://github.com/shelhamer/fcn.berkeleyvision.org"
_SIFTFLOW_ZIP = "http://www.cs.unc.edu/~jtighe/Papers/ECCV10/siftflow/SiftFlowDataset.zip"
_NYUD_TAR = "http://dl.caffe.berkeleyvision.org/nyud.tar.gz"
_NYUD_PAGE = "http://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html"
_CONTEXT_PAGE = "http://www.cs.stanford.edu/~roozbeh/pascal-context/"

Transforms = Callable[..., Any]


# --------------------------------------------------------------------------------------------
# Missing data.
# --------------------------------------------------------------------------------------------


def _require(title: str, split: str, root: Path, needed: Sequence[Path], how: str) -> None:
    """Raise DatasetNotFoundError naming the first of ``needed`` that does not exist."""
    missing = next((p for p in needed if not p.exists()), None)
    if missing is not None:
        raise DatasetNotFoundError(
            f"{title} ({split!r} split) was not found: {missing} does not exist.\n"
            f"Looked under the data root {root} (the root= argument, else $FCN_DATA).\n"
            f"There is no automatic download for {title}; get it by hand:\n{how}"
        )


def _check(name: str, value: Any, valid: Sequence[Any]) -> Any:
    if value not in valid:
        raise ValueError(f"{name} must be one of {tuple(valid)}, got {value!r}")
    return value


def _load_mat(path: Path, variable: str, sample: str, fix: str) -> np.ndarray:
    from scipy.io import loadmat

    mat = _decode(path, loadmat, sample, fix)
    if variable not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise KeyError(f"{path} has no variable {variable!r} (it has {found})")
    return mat[variable]


def _shift_classes(raw: np.ndarray, n_classes: int) -> np.ndarray:
    """Raw labels 1..n -> 0..n-1, anything else (0 or -1: unlabelled) -> void: uint8 (H, W)."""
    raw = np.asarray(raw).astype(np.int64)
    labelled = (raw >= 1) & (raw <= n_classes)
    return np.where(labelled, raw - 1, IGNORE_INDEX).astype(np.uint8)


def _read_depth(path: Path) -> torch.Tensor:
    """A 16-bit depth PNG in millimetres -> float32 (1, H, W) in metres."""
    with Image.open(path) as im:
        millimetres = np.array(im).astype(np.float32)
    return torch.from_numpy(millimetres / 1000)[None]


# --------------------------------------------------------------------------------------------
# Shared dataset machinery: load, transform jointly, convert.
# --------------------------------------------------------------------------------------------


def _joint(transforms: Transforms | None) -> Transforms | None:
    # PairTransform insists on RGB images and (H, W) labels; the v2 pipeline inside it works on
    # any number of image channels and on (K, H, W) labels, which RGB-D and two-task items need.
    # Its compact flag is kept by the dataset (_Pairs.compact).
    return transforms.pipeline if isinstance(transforms, PairTransform) else transforms


class _Pairs(Dataset):
    """Items ``_load(id) -> (tv Image, tv Mask)``, transformed jointly, converted to fcnlib's
    convention: float32 image (uint8 scaled to [0, 1], float kept), int64 label."""

    split: str
    root: Path

    def __init__(self, ids: list[str], transforms: Transforms | None, lists: list[Path]) -> None:
        self.ids = ids
        self.transforms = _joint(transforms)
        # PairTransform(compact=True): items as decoded, converted on the device (batch_to)
        self.compact = bool(getattr(transforms, "compact", False))
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
        return _decode(path, _read_rgb, name, self._fix(name))

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
        raw = np.asarray(_load_mat(path, variable, name, fix))
        _check_size(name, (path, raw.shape), image, fix)
        raw = raw.astype(np.int64)
        listed = " or ".join(map(str, unlabelled))
        expected = f"1..{n_classes} ({n_classes} classes) or {listed} (unlabelled)"
        _check_ids(
            name, raw, path, (min(unlabelled), n_classes), void=None, expected=expected, fix=fix
        )
        return _shift_classes(raw, n_classes)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image, label = self._load(self.ids[index])
        if self.transforms is not None:
            image, label = self.transforms(image, label)
        image = torch.as_tensor(image).as_subclass(torch.Tensor)
        label = torch.as_tensor(label).as_subclass(torch.Tensor)
        if self.compact:  # as decoded: fcnlib.train.batch_to converts on the device
            return image, label
        return TF.to_dtype(image, torch.float32, scale=True), label.long()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, root={str(self.root)!r})"
        )


# --------------------------------------------------------------------------------------------
# SIFT Flow.
# --------------------------------------------------------------------------------------------

_SIFTFLOW_SPLITS = ("trainval", "test")
_SIFTFLOW_TASKS = ("semantic", "geometric", "both")


class SIFTFlow(_Pairs):
    """SIFT Flow with the FCN split: semantic (33 classes) and geometric (3 classes) labels.

    Args:
        split: ``"trainval"`` (training) or ``"test"`` (200 images), the FCN lists.
        root: data root (default ``$FCN_DATA``); the data is in ``root/sift-flow``.
        task: ``"semantic"``: items ``(image, label)``, label 0..32 (:data:`SIFTFLOW_CLASSES`);
            ``"geometric"``: label 0..2 (:data:`SIFTFLOW_GEO_CLASSES`); ``"both"``: items
            ``(image, semantic, geometric)``, as :class:`fcnlib.data.ShapesDataset` with
            ``geometry=True``, for the paper's two-headed net.
        transforms: joint transform, e.g. :func:`fcnlib.voc.train_transform`. With
            ``task="both"`` it receives the labels stacked as one ``(2, H, W)`` mask, so both
            stay aligned with the image.

    ``image`` is float32 (3, 256, 256) in [0, 1]; labels are int64 (H, W), 255 where unlabelled.

    Raises:
        DatasetNotFoundError: if the data or the split list is absent.
        ValueError: on reading an item whose label is not the image's size or holds a raw id
            outside 0..33 (semantic) or -1..3 (geometric); the message names the file.
        OSError: on reading an item whose image or label file does not decode, naming it.
    """

    def __init__(
        self,
        split: str = "trainval",
        *,
        root: str | Path | None = None,
        task: str = "semantic",
        transforms: Transforms | None = None,
    ) -> None:
        self.split = _check("split", split, _SIFTFLOW_SPLITS)
        self.task = _check("task", task, _SIFTFLOW_TASKS)
        self.root = _root(root)
        self.folder = folder = self.root / _SIFTFLOW_DIR
        needed = [folder / d / _SCENES for d in ("Images", "SemanticLabels", "GeoLabels")]
        how = (
            f"  1. SiftFlowDataset.zip (linked from the FCN repository's\n"
            f"     data/sift-flow/README.md: {_SIFTFLOW_ZIP}),\n"
            f"     unpacked so that {needed[0]} exists;\n"
            f"  2. the FCN split lists trainval.txt and test.txt, from\n"
            f"     {_FCN_REPO}/tree/master/data/sift-flow, copied into {folder}."
        )
        split_list = folder / f"{split}.txt"
        _require("SIFT Flow", split, self.root, [folder, *needed, split_list], how)
        super().__init__(_read_ids(split_list), transforms, [split_list])

    def _load(self, name: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        path = self.folder / "Images" / _SCENES / f"{name}.jpg"
        image = self._image(name, path)
        labels = []
        if self.task != "geometric":
            mat = self.folder / "SemanticLabels" / _SCENES / f"{name}.mat"
            labels.append(self._label(name, mat, "S", len(SIFTFLOW_CLASSES), (path, image.shape)))
        if self.task != "semantic":
            mat = self.folder / "GeoLabels" / _SCENES / f"{name}.mat"
            n = len(SIFTFLOW_GEO_CLASSES)
            labels.append(self._label(name, mat, "S", n, (path, image.shape), unlabelled=(-1, 0)))
        label = torch.from_numpy(np.stack(labels))  # (1 or 2, H, W)
        return tv_tensors.Image(image), tv_tensors.Mask(label if len(labels) == 2 else label[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image, label = super().__getitem__(index)
        return (image, label[0], label[1]) if self.task == "both" else (image, label)


# --------------------------------------------------------------------------------------------
# NYUDv2 and HHA.
# --------------------------------------------------------------------------------------------

_NYUD_SPLITS = ("train", "val", "trainval", "test")


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera's intrinsics in pixels: focal lengths ``fx``, ``fy``, principal point
    ``cx``, ``cy`` (column and row of the optical axis, 0 = first pixel's centre)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def crop(self, top: int, left: int) -> Intrinsics:
        """The intrinsics of the image cropped to start at row ``top``, column ``left``."""
        return Intrinsics(self.fx, self.fy, self.cx - left, self.cy - top)


LEVEL = (0.0, 1.0, 0.0)  # gravity as seen by a level camera: straight down its y axis

# The NYU Depth V2 toolbox's RGB camera (camera_params.m; Gupta et al.'s getCameraParam('color')),
# for the full 640x480 frame. Gupta et al. crop their images; use .crop() for a cropped frame.
NYUD_INTRINSICS = Intrinsics(
    fx=5.1885790117450188e02, fy=5.1946961112127485e02,
    cx=3.2558244941119034e02, cy=2.5373616633400465e02,
)  # fmt: skip


def _back_project(z: torch.Tensor, k: Intrinsics) -> torch.Tensor:
    """Depth (H, W) -> camera-frame points (3, H, W): x right, y down, z forward, z's units."""
    h, w = z.shape
    v, u = torch.meshgrid(
        torch.arange(h, dtype=z.dtype), torch.arange(w, dtype=z.dtype), indexing="ij"
    )
    return torch.stack([(u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy, z])


def _normals(points: torch.Tensor, valid: torch.Tensor, radius: int) -> torch.Tensor:
    """Unit surface normals (3, H, W) by a least-squares plane through each (2r+1)^2 window of
    valid points, oriented away from the camera (n . p >= 0); NaN where no plane is defined.

    A plane n . p = d is, divided by z, n . (x/z, y/z, 1) = d / z: linear in a = (x/z, y/z, 1)
    with target 1/z, so the normal equations need only window sums of a a^T and a / z (box
    filters), as Gupta et al.'s computeNormalsSquareSupport.
    """
    x, y, z = points
    z_safe = torch.where(valid, z, torch.ones_like(z))
    a = torch.stack([x / z_safe, y / z_safe, torch.ones_like(z)]) * valid  # (3, H, W), 0 if invalid
    target = valid / z_safe  # (H, W)
    terms = torch.cat([(a[:, None] * a[None]).flatten(0, 1), a * target])  # (12, H, W)
    size = 2 * radius + 1  # window means: the same solution as sums
    sums = F.avg_pool2d(terms[None], size, stride=1, padding=radius, count_include_pad=True)[0]
    ata = sums[:9].permute(1, 2, 0).unflatten(-1, (3, 3))  # (H, W, 3, 3)
    atb = sums[9:].permute(1, 2, 0)  # (H, W, 3)
    c0, c1, c2 = ata.unbind(-1)  # columns; adj(A) has rows c1 x c2, c2 x c0, c0 x c1
    adjugate = torch.stack([c1.cross(c2, dim=-1), c2.cross(c0, dim=-1), c0.cross(c1, dim=-1)], -2)
    det = (c0 * c1.cross(c2, dim=-1)).sum(-1)
    n = (adjugate @ atb[..., None])[..., 0]  # A^-1 b times det >= 0: the normal's direction
    scale = ata.diagonal(dim1=-2, dim2=-1).sum(-1) ** 3
    n = n / n.norm(dim=-1, keepdim=True)
    n[~(valid & (det > 1e-15 * scale))] = math.nan  # fewer than 3 non-collinear points
    n = n.permute(2, 0, 1)  # (3, H, W)
    away = (n * points).sum(0, keepdim=True) >= 0
    return torch.where(away, n, -n)


def _gravity(normals: torch.Tensor) -> torch.Tensor:
    """Gravity's direction (3,), pointing down in the camera frame, as Gupta et al.'s getYDir:
    starting from the camera's y axis, repeatedly call normals within 45 degrees (then 15) of it
    "floor" and those within 45 (then 15) degrees of perpendicular "wall", and take the direction
    most parallel to the floors and most perpendicular to the walls: the eigenvector of
    sum(wall n n^T) - sum(floor n n^T) with the smallest eigenvalue, signed to agree with the
    previous estimate. Five rounds at each angle. Where that eigenvector is not unique (no floor
    in view), the tied direction nearest the previous estimate is kept: Gupta et al.'s code
    takes an arbitrary one."""
    n = normals.flatten(1).T  # (H*W, 3)
    n = n[torch.isfinite(n).all(1)]
    g = torch.tensor([0.0, 1.0, 0.0], dtype=normals.dtype)
    for angle, rounds in ((45.0, 5), (15.0, 5)):
        for _ in range(rounds):
            cos = (n @ g).abs()
            floor = n[cos > math.cos(math.radians(angle))]
            wall = n[cos < math.sin(math.radians(angle))]
            if len(floor) + len(wall) == 0:
                return g
            values, vectors = torch.linalg.eigh(wall.T @ wall - floor.T @ floor)
            # Of the directions tied for the smallest eigenvalue (a scene with walls only leaves
            # a whole plane of them), the one nearest the current estimate, pointing its way.
            tied = vectors[:, values <= values[0] + 1e-9 * values.abs().max()]  # (3, k)
            new = tied @ (tied.T @ g)
            g = new / new.norm() if new.norm() > 1e-9 else vectors[:, 0]
    return g


def hha(
    depth: torch.Tensor | np.ndarray,
    intrinsics: Intrinsics = NYUD_INTRINSICS,
    *,
    gravity: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Gupta et al.'s HHA encoding of a depth image (ECCV 2014): float32 (3, H, W) in [0, 1].

    Args:
        depth: (H, W) depth in metres, along the optical axis; 0 or NaN = no reading.
        intrinsics: the camera's, in pixels of this image (:data:`NYUD_INTRINSICS`, for the
            full 640x480 NYUDv2 frame, by default).
        gravity: the downward direction in the camera frame (x right, y down, z forward).
            ``None`` (default): estimated from the surface normals as Gupta et al. do
            (iteratively, see ``_gravity``). :data:`LEVEL`, ``(0, 1, 0)``, assumes a level
            camera: a simplification, exact for a camera held level.

    The channels follow Gupta et al.'s saveHHA.m, each rounded to 0..255 (saturating) and
    divided by 255, so that the result equals what an HHA PNG decodes to:

    0. horizontal disparity ``31000 / depth in cm``, depth clamped to >= 1 m: 255 up to about
       1.22 m, 103 at 3 m, 31 at 10 m;
    1. height above the lowest point in cm (0..255 cm), along gravity; if that point is less
       than 90 cm below the camera, the ground is taken to be 130 cm below it;
    2. the angle between the surface normal (from a 7x7 window; gravity uses 21x21) and
       gravity in degrees, plus 38: 38 for floors, 128 for walls, 218 for ceilings.

    Pixels without depth are 0 in all three channels, pixels without a normal in the third.
    Where this differs from Gupta et al.'s code: their NYUDv2 depth has its holes filled (only
    the normals skip the sensor's missing pixels); their pixels are numbered from 1, with the
    same ``cx``, ``cy`` (a one-pixel shift); ties in the gravity estimate (see ``_gravity``).

    >>> depth = torch.full((24, 32), 3.0)  # a wall 3 m in front of the camera
    >>> k = Intrinsics(fx=32.0, fy=32.0, cx=15.5, cy=11.5)
    >>> (hha(depth, k)[:, 12, 16] * 255).tolist()  # 3 m; 103 cm above the lowest point; 90 + 38
    [103.0, 103.0, 128.0]
    """
    z = torch.as_tensor(depth, dtype=torch.float64) * 100  # cm, the units of Gupta et al.'s code
    if z.dim() != 2:
        raise ValueError(f"depth must be (H, W) in metres, got shape {tuple(z.shape)}")
    valid = torch.isfinite(z) & (z > 0)
    z = torch.where(valid, z, torch.zeros_like(z))
    points = _back_project(z, intrinsics)  # (3, H, W) cm
    if gravity is None:
        g = _gravity(_normals(points, valid, radius=10))
    else:
        g = torch.as_tensor(gravity, dtype=torch.float64).flatten()
        if g.shape != (3,) or not g.norm() > 0:
            raise ValueError(f"gravity must be a non-zero 3-vector, got {gravity!r}")
        g = g / g.norm()
    down = g[:, None, None]
    cos = ((_normals(points, valid, radius=3) * down).sum(0)).clamp(-1, 1)
    angle = torch.rad2deg(torch.acos(cos))  # NaN where there is no normal
    height = -(points * down).sum(0)  # cm, up
    lowest = float(height[valid].min()) if valid.any() else 0.0
    lowest = -130.0 if lowest > -90.0 else lowest
    disparity = 31000.0 / z.clamp(min=100.0)
    channels = torch.stack([disparity, height - lowest, angle + 128 - 90])
    channels = torch.floor(channels.nan_to_num(0.0).clamp(0, 255) + 0.5)  # MATLAB's uint8()
    channels[:, ~valid] = 0
    return (channels / 255).float()


class NYUDv2(_Pairs):
    """NYUDv2 with Gupta et al.'s 40 classes, in the FCN authors' layout (``root/nyud``).

    Args:
        split: ``"train"`` (381), ``"val"`` (414), ``"trainval"`` (795: the paper's training set;
            ``trainval.txt`` if present, else ``train.txt`` then ``val.txt``) or ``"test"`` (654).
        root: data root (default ``$FCN_DATA``).
        modality: what ``image`` holds, float32:

            * ``"rgb"``: (3, H, W) in [0, 1];
            * ``"depth"``: (1, H, W) in metres (0 = no reading);
            * ``"hha"``: (3, H, W) in [0, 1], Gupta et al.'s HHA images from disk (:func:`hha`
              computes the same encoding from depth);
            * ``"rgbd"``: (4, H, W): RGB in [0, 1], then depth in metres;
            * ``"rgb-hha"``: (6, H, W): RGB, then HHA, the input of
              :class:`fcnlib.models.LateFusion` for the paper's RGB-HHA net.
        transforms: joint transform, e.g. :func:`fcnlib.voc.train_transform` (padding adds
            image 0, i.e. no depth reading, and label 255).

    ``label`` is int64 (H, W): 0..39 (:data:`NYUD_CLASSES`), 255 = void.

    Raises:
        DatasetNotFoundError: if a split list, the labels or the modality's images are absent.
        ValueError: on reading an item whose images and label differ in size or whose label
            holds a raw id outside 0..40; the message names the file.
        OSError: on reading an item whose image, depth or label file does not decode.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        root: str | Path | None = None,
        modality: str = "rgb",
        transforms: Transforms | None = None,
    ) -> None:
        self.split = _check("split", split, _NYUD_SPLITS)
        self.modality = _check("modality", modality, NYUD_MODALITIES)
        self.root = _root(root)
        self.folder = folder = self.root / _NYUD_DIR
        lists = [folder / f"{split}.txt"]
        if split == "trainval" and not lists[0].exists():
            lists = [folder / "train.txt", folder / "val.txt"]
        kinds = {"rgb": ["images"], "depth": ["depth"], "hha": ["hha"]}
        kinds |= {"rgbd": ["images", "depth"], "rgb-hha": ["images", "hha"]}
        data = [folder / "data" / kind for kind in kinds[modality]]
        how = (
            f"  1. the FCN authors' copy of Gupta et al.'s data in this layout, nyud.tar.gz\n"
            f"     (linked from the FCN repository's data/nyud/README.md: {_NYUD_TAR}),\n"
            f"     unpacked so that {folder / 'segmentation'} exists;\n"
            f"  2. the split lists train.txt, val.txt and test.txt, if missing, from\n"
            f"     {_FCN_REPO}/tree/master/data/nyud, copied into {folder}.\n"
            f"  The dataset's page: {_NYUD_PAGE}"
        )
        needed = [folder, *lists, folder / "segmentation", *data]
        _require("NYUDv2", split, self.root, needed, how)
        super().__init__([i for f in lists for i in _read_ids(f)], transforms, lists)

    def _load(self, name: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        data, fix = self.folder / "data", self._fix(name)
        parts: list[tuple[Path, torch.Tensor]] = []  # (file, (C, H, W)), in channel order
        if self.modality in ("rgb", "rgbd", "rgb-hha"):
            path = data / "images" / f"img_{name}.png"
            parts.append((path, self._image(name, path)))
        if self.modality in ("hha", "rgb-hha"):
            path = data / "hha" / f"img_{name}.png"
            parts.append((path, self._image(name, path)))
        if self.modality in ("depth", "rgbd"):
            path = data / "depth" / f"img_{name}.png"
            depth = _decode(path, _read_depth, name, fix)  # (1, H, W) m
            # RGB in [0, 1] next to metres
            parts = [(p, x.float() / 255) for p, x in parts] + [(path, depth)]
        first = (parts[0][0], parts[0][1].shape)
        for path, x in parts[1:]:
            _check_size(name, (path, x.shape[-2:]), first, fix, what="image")
        mat = self.folder / "segmentation" / f"img_{name}.mat"
        label = self._label(name, mat, "segmentation", len(NYUD_CLASSES), first)
        image = torch.cat([x for _, x in parts])
        return tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(label))


# --------------------------------------------------------------------------------------------
# PASCAL-Context.
# --------------------------------------------------------------------------------------------

_CONTEXT_SPLITS = ("train", "val")
_BACKGROUNDS = ("class", "void")


def _voc2010_dir(root: Path) -> Path:
    """torchvision's ``VOCdevkit/VOC2010``, or the FCN repository's ``pascal/VOC2010``."""
    ours, theirs = root / "VOCdevkit" / "VOC2010", root / "pascal" / "VOC2010"
    return theirs if not ours.is_dir() and theirs.is_dir() else ours


def _read_context_labels(path: Path) -> dict[str, int]:
    """labels.txt, lines ``<raw id>: <name>`` -> {name without spaces: raw id}."""
    names = {}
    for line in path.read_text().splitlines():
        if line.strip():
            raw_id, _, name = line.partition(":")
            names[name.strip().replace(" ", "")] = int(raw_id)
    return names


def _context_lookup(labels_txt: Path) -> np.ndarray:
    """uint8 table raw id (0 and the ids labels.txt lists) -> task label: 1..59 for the 59
    classes, 0 for the rest."""
    raw_ids = _read_context_labels(labels_txt)
    table = np.zeros(max(raw_ids.values(), default=0) + 1, dtype=np.uint8)
    for task_id, name in enumerate(CONTEXT_CLASSES[1:], start=1):
        raw_name = _CONTEXT_RAW_NAMES.get(name, name)
        if raw_name not in raw_ids:
            raise ValueError(f"{labels_txt} does not list the class {raw_name!r}")
        table[raw_ids[raw_name]] = task_id
    return table


class PascalContext(_Pairs):
    """PASCAL-Context, the 59-class task, on PASCAL VOC 2010 images.

    Args:
        split: ``"train"`` or ``"val"``: VOC 2010's ``ImageSets/Main`` lists, as the official
            FCN layer reads them.
        root: data root (default ``$FCN_DATA``): annotations in ``root/pascal-context``, images
            in ``root/VOCdevkit/VOC2010`` (or ``root/pascal/VOC2010``).
        n_classes: 59. The paper's 33-class task raises NotImplementedError: its class mapping
            could not be established from the sources (see the message).
        background: ``"class"`` (default, as the official FCN layer and nets): label 0 is
            background, every pixel outside the 59 classes (unlabelled included), so a model
            scores 60 classes; ``"void"``: those pixels are 255 and the 59 classes are 0..58.
        transforms: joint transform, e.g. :func:`fcnlib.voc.train_transform`.

    Items ``(image, label)``: float32 (3, H, W) in [0, 1]; int64 (H, W) indexing
    :data:`CONTEXT_CLASSES` (with ``background="void"``: ``CONTEXT_CLASSES[label + 1]``).

    Raises:
        DatasetNotFoundError: if the annotations, labels.txt, the split list or the images are
            absent.
        ValueError: on reading an item whose ``LabelMap`` is not the image's size or holds a
            raw id above the largest that labels.txt lists; the message names the file.
        OSError: on reading an item whose image or label file does not decode.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        root: str | Path | None = None,
        n_classes: int = 59,
        background: str = "class",
        transforms: Transforms | None = None,
    ) -> None:
        if n_classes == 33:
            raise NotImplementedError(
                "The 33-class PASCAL-Context task is not implemented. The FCN paper reports it "
                "(53.5 mean IU) on a subset defined by Mottaghi et al., but the official FCN "
                "code implements only the 59-class task, and which of the 459 raw classes make "
                "up the 33 could not be verified from a primary source, so no mapping is "
                f"guessed here. See the dataset's page: {_CONTEXT_PAGE}"
            )
        _check("n_classes", n_classes, (59,))
        self.split = _check("split", split, _CONTEXT_SPLITS)
        self.background = _check("background", background, _BACKGROUNDS)
        self.root = _root(root)
        self.folder = self.root / _CONTEXT_DIR
        self.voc_folder = voc_folder = _voc2010_dir(self.root)
        split_file = voc_folder / "ImageSets" / "Main" / f"{split}.txt"
        command = (
            f'python -c "import torchvision; torchvision.datasets.VOCDetection('
            f"{str(self.root)!r}, year='2010', download=True)\""
        )
        how = (
            f"  1. the annotations from the PASCAL-Context page {_CONTEXT_PAGE}\n"
            f"     (trainval/<id>.mat and labels.txt), unpacked into {self.folder};\n"
            f"  2. the PASCAL VOC 2010 train/val images in {voc_folder}; torchvision fetches\n"
            f"     them (MD5-checked) with\n"
            f"       {command}"
        )
        needed = [self.folder, self.folder / "trainval", self.folder / "labels.txt", split_file]
        _require("PASCAL-Context", split, self.root, [*needed, voc_folder / "JPEGImages"], how)
        self._table = _context_lookup(self.folder / "labels.txt")
        super().__init__(_read_ids(split_file), transforms, [split_file])

    def _load(self, name: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        path, fix = self.voc_folder / "JPEGImages" / f"{name}.jpg", self._fix(name)
        image = self._image(name, path)
        mat = self.folder / "trainval" / f"{name}.mat"
        raw = np.asarray(_load_mat(mat, "LabelMap", name, fix))
        _check_size(name, (mat, raw.shape), (path, image.shape), fix)
        raw = raw.astype(np.int64)
        top = len(self._table) - 1
        expected = f"0 (unlabelled) or a raw id of {self.folder / 'labels.txt'}, 1..{top}"
        _check_ids(name, raw, mat, (0, top), void=None, expected=expected, fix=fix)
        label = self._table[raw]
        if self.background == "void":
            label = np.where(label == 0, IGNORE_INDEX, label - 1).astype(np.uint8)
        return tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(label))


# --------------------------------------------------------------------------------------------
# Fake datasets in the real on-disk formats, for tests and CI.
# --------------------------------------------------------------------------------------------


@dataclass
class FakeData(voc.FakeData):
    """What a fake-data writer wrote: :class:`fcnlib.voc.FakeData` (``labels``: the *raw*
    arrays written, before any class shift) plus ``extras``: kind -> id -> array."""

    extras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _fake_raw_label(
    rng: np.random.Generator, size: tuple[int, int], classes: Sequence[int], unlabelled: int
) -> np.ndarray:
    """A random class everywhere, then 1-3 rectangles of random classes outlined by unlabelled
    pixels: int64 (H, W)."""
    h, w = size
    label = np.full((h, w), rng.choice(classes), dtype=np.int64)
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, max(1, h - 4))), int(rng.integers(0, max(1, w - 4)))
        y1 = int(rng.integers(y0 + min(4, h - y0), h + 1))
        x1 = int(rng.integers(x0 + min(4, w - x0), w + 1))
        label[y0:y1, x0:x1] = rng.choice(classes)
        label[y0:y1, [x0, x1 - 1]] = unlabelled
        label[[y0, y1 - 1], x0:x1] = unlabelled
    return label


def _fake_image(rng: np.random.Generator, raw: np.ndarray, noise: int = 12) -> np.ndarray:
    """uint8 (H, W, 3): each pixel the VOC colour of its raw label (mod 256), plus noise."""
    colours = voc_palette().numpy().astype(np.int16)
    jitter = rng.integers(-noise, noise + 1, size=(*raw.shape, 3))
    return np.clip(colours[raw.astype(np.int64) % 256] + jitter, 0, 255).astype(np.uint8)


def _savemat(path: Path, variables: dict[str, np.ndarray]) -> None:
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, variables)


# SIFT Flow's ids start with the scene category.
_OUTDOOR = ("coast", "forest", "highway", "insidecity", "mountain", "opencountry", "street",
            "tallbuilding")  # fmt: skip


def write_fake_siftflow(
    root: str | Path,
    *,
    n_trainval: int = 4,
    n_test: int = 2,
    size: tuple[int, int] = (32, 32),
    seed: int = 0,
) -> FakeData:
    """Write a tiny random SIFT Flow under ``root/sift-flow``, in the real format.

    JPEG images, ``.mat`` labels holding ``S`` (float64 here: the real files' dtype is not
    verified; semantic 0 unlabelled and 1..33, geometric -1 unlabelled and 1..3) and the FCN
    lists ``trainval.txt``/``test.txt``.
    Ids look like SIFT Flow's (``coast_fake0``). ``labels`` holds the semantic ``S``,
    ``extras["geometric"]`` the geometric one.
    """
    size = _fake_size(size)
    rng = np.random.default_rng(seed)
    folder = _root(root) / _SIFTFLOW_DIR
    ids = [f"{_OUTDOOR[i % len(_OUTDOOR)]}_fake{i}" for i in range(n_trainval + n_test)]
    out = FakeData(folder, {"trainval": ids[:n_trainval], "test": ids[n_trainval:]})
    out.extras["geometric"] = {}
    for split, split_ids in out.splits.items():
        _write_lines(folder / f"{split}.txt", split_ids)
    (folder / "Images" / _SCENES).mkdir(parents=True, exist_ok=True)
    for name in ids:
        semantic = _fake_raw_label(rng, size, range(1, len(SIFTFLOW_CLASSES) + 1), 0)
        geometric = _fake_raw_label(rng, size, range(1, len(SIFTFLOW_GEO_CLASSES) + 1), -1)
        image = _fake_image(rng, semantic)
        Image.fromarray(image).save(folder / "Images" / _SCENES / f"{name}.jpg", quality=95)
        _savemat(folder / "SemanticLabels" / _SCENES / f"{name}.mat", {"S": semantic * 1.0})
        _savemat(folder / "GeoLabels" / _SCENES / f"{name}.mat", {"S": geometric * 1.0})
        out.images[name], out.labels[name] = image, semantic
        out.extras["geometric"][name] = geometric
    return out


def _fake_room(rng: np.random.Generator, size: tuple[int, int], k: Intrinsics) -> np.ndarray:
    """Depth in metres (H, W) of a floor 1-1.5 m below a level camera and a wall 4-6 m ahead."""
    h, w = size
    camera_height, wall = 1.0 + 0.5 * rng.random(), 4.0 + 2.0 * rng.random()
    rows = (np.arange(h)[:, None] - k.cy) / k.fy  # y / z of each pixel's ray
    with np.errstate(divide="ignore"):
        floor = np.where(rows > 0, camera_height / rows, np.inf)
    return np.minimum(floor, wall) * np.ones((1, w))


def write_fake_nyud(
    root: str | Path,
    *,
    n_train: int = 2,
    n_val: int = 2,
    n_test: int = 2,
    size: tuple[int, int] = (24, 32),
    seed: int = 0,
    intrinsics: Intrinsics | None = None,
) -> FakeData:
    """Write a tiny random NYUDv2 under ``root/nyud``, in the FCN authors' format.

    ``data/images`` RGB PNGs, ``data/depth`` 16-bit PNGs in millimetres (a floor and a wall, as
    seen by a level camera with ``intrinsics``; default: a 90-degree field of view),
    ``data/hha`` 8-bit PNGs of ``hha(depth, intrinsics, gravity=LEVEL)`` (the camera's true
    gravity: on images this small, the estimate is poor), ``segmentation/img_<id>.mat``
    holding ``segmentation`` (uint8, 0 void, 1..40) and ``train.txt``/``val.txt``/``test.txt``
    (ids from 5001, as the real ones). ``extras``: ``"depth"`` (uint16 mm), ``"hha"`` (uint8
    (H, W, 3)).
    """
    h, w = size = _fake_size(size)
    k = intrinsics or Intrinsics(fx=w / 2, fy=w / 2, cx=(w - 1) / 2, cy=(h - 1) / 2)
    rng = np.random.default_rng(seed)
    folder = _root(root) / _NYUD_DIR
    ids = [str(5001 + i) for i in range(n_train + n_val + n_test)]
    a, b = n_train, n_train + n_val
    out = FakeData(folder, {"train": ids[:a], "val": ids[a:b], "test": ids[b:]})
    out.extras = {"depth": {}, "hha": {}}
    for split, split_ids in out.splits.items():
        _write_lines(folder / f"{split}.txt", split_ids)
    for sub in ("images", "depth", "hha"):
        (folder / "data" / sub).mkdir(parents=True, exist_ok=True)
    for name in ids:
        raw = _fake_raw_label(rng, size, range(1, len(NYUD_CLASSES) + 1), 0).astype(np.uint8)
        image = _fake_image(rng, raw, noise=3)
        millimetres = np.round(_fake_room(rng, size, k) * 1000).astype(np.uint16)
        encoded = hha(millimetres / 1000, k, gravity=LEVEL).mul(255).round().byte()
        encoded = encoded.permute(1, 2, 0).numpy()  # (H, W, 3)
        Image.fromarray(image).save(folder / "data" / "images" / f"img_{name}.png")
        Image.fromarray(millimetres).save(folder / "data" / "depth" / f"img_{name}.png")
        Image.fromarray(encoded).save(folder / "data" / "hha" / f"img_{name}.png")
        _savemat(folder / "segmentation" / f"img_{name}.mat", {"segmentation": raw})
        out.images[name], out.labels[name] = image, raw
        out.extras["depth"][name], out.extras["hha"][name] = millimetres, encoded
    return out


# Raw ids of the 59 task classes in PASCAL-Context's labels.txt (as the FCN repository's
# data/pascal-context/classes-400.txt lists them), plus a few others, for fake labels.txt files.
_CONTEXT_RAW_IDS = dict(zip(CONTEXT_CLASSES[1:], (
    2, 23, 25, 31, 34, 45, 59, 65, 72, 98, 397, 113, 207, 258, 284, 308, 347, 368, 416, 427, 9,
    18, 22, 33, 44, 46, 68, 80, 85, 104, 115, 144, 158, 159, 162, 187, 189, 220, 232, 259, 260,
    105, 296, 355, 295, 324, 326, 349, 354, 360, 366, 19, 415, 420, 424, 440, 445, 454, 458,
), strict=True))  # fmt: skip
_CONTEXT_OTHERS = {1: "accordion", 3: "air conditioner", 431: "unknown", 459: "wool"}


def write_fake_context(
    root: str | Path,
    *,
    n_train: int = 3,
    n_val: int = 2,
    size: tuple[int, int] = (32, 48),
    seed: int = 0,
) -> FakeData:
    """Write a tiny random PASCAL-Context under ``root``, in the real format.

    VOC 2010 JPEG images and ``ImageSets/Main/{train,val,trainval}.txt`` in
    ``root/VOCdevkit/VOC2010``; in ``root/pascal-context``, ``trainval/<id>.mat`` holding
    ``LabelMap`` (uint16 raw ids: 0, the 59 task classes and a few others) and ``labels.txt``
    (``<raw id>: <name>``, the real ids of those classes). ``path`` is the annotation folder;
    ``labels`` holds the raw ``LabelMap``.
    """
    size = _fake_size(size)
    rng = np.random.default_rng(seed)
    base = _root(root)
    voc_folder, folder = base / "VOCdevkit" / "VOC2010", base / _CONTEXT_DIR
    ids = [f"2010_{i:06d}" for i in range(n_train + n_val)]
    out = FakeData(folder, {"train": ids[:n_train], "val": ids[n_train:], "trainval": ids})
    for split, split_ids in out.splits.items():
        _write_lines(voc_folder / "ImageSets" / "Main" / f"{split}.txt", split_ids)
    names = {raw_id: _CONTEXT_RAW_NAMES.get(n, n) for n, raw_id in _CONTEXT_RAW_IDS.items()}
    names |= _CONTEXT_OTHERS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("".join(f"{i}: {names[i]}\n" for i in sorted(names)))
    (voc_folder / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for name in ids:
        raw = _fake_raw_label(rng, size, sorted(names), 0).astype(np.uint16)
        image = _fake_image(rng, raw)
        Image.fromarray(image).save(voc_folder / "JPEGImages" / f"{name}.jpg", quality=95)
        _savemat(folder / "trainval" / f"{name}.mat", {"LabelMap": raw})
        out.images[name], out.labels[name] = image, raw
    return out

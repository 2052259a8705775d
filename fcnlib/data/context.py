"""PASCAL-Context (Mottaghi et al.): every pixel of VOC 2010, the 59-class task.

Every pixel of the PASCAL VOC 2010 train and val images (10,103) labelled with one of 459
classes; the usual task keeps the 59 most frequent (:data:`CONTEXT_CLASSES`) and calls the rest
background. FCN-8s reaches 35.1 mean IU on the 59-class task and 53.5 on a 33-class task, which
is not implemented here (see :class:`PascalContext`).

On disk, under the data root (``$FCN_DATA``)::

    VOCdevkit/VOC2010/JPEGImages/<id>.jpg                VOC 2010 (torchvision's layout;
    VOCdevkit/VOC2010/ImageSets/Main/train.txt, val.txt   pascal/VOC2010, FCN's, also works)
    pascal-context/trainval/<id>.mat                     LabelMap (uint16): 0, 1..459
    pascal-context/labels.txt                            "<raw id>: <name>", one per line

The annotations come from the dataset's page (no automatic download); torchvision fetches the
VOC 2010 images, MD5-checked. The VOC 2010 split sizes (4,998 ``train``, 5,105 ``val``) are
from secondary sources.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors

from fcnlib.data.files import (
    PairDataset,
    Transforms,
    check_choice,
    check_ids,
    check_size,
    data_root,
    load_mat,
    read_ids,
    require_files,
)
from fcnlib.data.labels import IGNORE_INDEX

__all__ = ["CONTEXT_CLASSES", "FOLDER", "RAW_NAMES", "SPLIT_SIZES", "PascalContext"]

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
RAW_NAMES = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}

SPLIT_SIZES = {"train": 4998, "val": 5105}  # VOC 2010 Main lists, from secondary sources
FOLDER = "pascal-context"
_CONTEXT_PAGE = "http://www.cs.stanford.edu/~roozbeh/pascal-context/"
_CONTEXT_SPLITS = ("train", "val")
_BACKGROUNDS = ("class", "void")


def _voc2010_dir(root: Path) -> Path:
    """torchvision's ``VOCdevkit/VOC2010``, or the FCN repository's ``pascal/VOC2010``."""
    ours, theirs = root / "VOCdevkit" / "VOC2010", root / "pascal" / "VOC2010"
    return theirs if not ours.is_dir() and theirs.is_dir() else ours


def _read_context_labels(path: Path) -> dict[str, int]:
    """labels.txt, lines ``<raw id>: <name>`` -> {name without spaces: raw id}."""
    names = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            raw_id, colon, name = line.partition(":")
            if not (colon and raw_id.strip().isdigit() and name.strip()):
                raise ValueError(
                    f"{path}, line {number}: expected '<raw id>: <name>', such as '2: "
                    f"aeroplane', got {line!r}. Replace labels.txt with the one from the "
                    f"PASCAL-Context annotations ({_CONTEXT_PAGE})."
                )
            names[name.strip().replace(" ", "")] = int(raw_id)
    return names


def _context_lookup(labels_txt: Path) -> np.ndarray:
    """uint8 table raw id (0 and the ids labels.txt lists) -> task label: 1..59 for the 59
    classes, 0 for the rest."""
    raw_ids = _read_context_labels(labels_txt)
    table = np.zeros(max(raw_ids.values(), default=0) + 1, dtype=np.uint8)
    for task_id, name in enumerate(CONTEXT_CLASSES[1:], start=1):
        raw_name = RAW_NAMES.get(name, name)
        if raw_name not in raw_ids:
            raise ValueError(f"{labels_txt} does not list the class {raw_name!r}")
        table[raw_ids[raw_name]] = task_id
    return table


class PascalContext(PairDataset):
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
        transforms: joint transform, e.g. :func:`fcnlib.data.transforms.train_transform`.

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
        check_choice("n_classes", n_classes, (59,))
        self.split = check_choice("split", split, _CONTEXT_SPLITS)
        self.background = check_choice("background", background, _BACKGROUNDS)
        self.root = data_root(root)
        self.folder = self.root / FOLDER
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
        require_files("PASCAL-Context", split, self.root, [*needed, voc_folder / "JPEGImages"], how)
        self._table = _context_lookup(self.folder / "labels.txt")
        fix = f"It comes with the VOC 2010 images; fetch them again with\n  {command}"
        super().__init__(read_ids(split_file, fix=fix), transforms, [split_file])

    def _load(self, name: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        path, fix = self.voc_folder / "JPEGImages" / f"{name}.jpg", self._fix(name)
        image = self._image(name, path)
        mat = self.folder / "trainval" / f"{name}.mat"
        raw = np.asarray(load_mat(mat, "LabelMap", name, fix))
        check_size(name, (mat, raw.shape), (path, image.shape), fix)
        raw = raw.astype(np.int64)
        top = len(self._table) - 1
        expected = f"0 (unlabelled) or a raw id of {self.folder / 'labels.txt'}, 1..{top}"
        check_ids(name, raw, mat, (0, top), void=None, expected=expected, fix=fix)
        label = self._table[raw]
        if self.background == "void":
            label = np.where(label == 0, IGNORE_INDEX, label - 1).astype(np.uint8)
        return tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(label))

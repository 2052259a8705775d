"""SIFT Flow (Liu et al.): outdoor scenes labelled twice, semantically and geometrically.

2,688 outdoor photographs of 256x256 pixels, every pixel labelled twice: with one of 33 semantic
classes (:data:`SIFTFLOW_CLASSES`) and with one of 3 geometric classes
(:data:`SIFTFLOW_GEO_CLASSES`: sky, horizontal, vertical). The paper splits it into 2,488
training and 200 test images and trains one net with two heads: FCN-16s reaches 85.2 pixel
accuracy and 39.5 mean IU on the semantic classes, 94.3 pixel accuracy on the geometric ones.

On disk, under the data root (``$FCN_DATA``), in the layout the official FCN code reads::

    sift-flow/trainval.txt, test.txt                     the FCN split lists (image ids)
    sift-flow/Images/spatial_envelope_256x256_static_8outdoorcategories/<id>.jpg
    sift-flow/SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat   S
    sift-flow/GeoLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat        S

Semantic ``0`` and geometric ``-1`` (or ``0``) are unlabelled and become void (255); classes
start at 1 on disk and at 0 here. There is no automatic download (no archive fcnlib could
check): ``SiftFlowDataset.zip`` is linked from the FCN repository's
``data/sift-flow/README.md``, and the split lists are in that folder. The dtype of ``S`` and
the number of ids in ``trainval.txt`` are not verified from the sources (any numeric dtype is
read). Offline, :func:`fcnlib.data.fake.write_fake_siftflow` writes a tiny one::

    >>> import tempfile
    >>> from fcnlib.data.fake import write_fake_siftflow
    >>> root = tempfile.mkdtemp()
    >>> _ = write_fake_siftflow(root, n_trainval=2, n_test=1, size=(16, 16))
    >>> image, semantic, geometric = SIFTFlow("trainval", root=root, task="both")[0]
    >>> image.shape, semantic.shape, geometric.dtype
    (torch.Size([3, 16, 16]), torch.Size([16, 16]), torch.int64)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors

from fcnlib.data.files import (
    FCN_REPOSITORY,
    PairDataset,
    Transforms,
    check_choice,
    data_root,
    read_ids,
    require_files,
)

__all__ = [
    "FOLDER",
    "SCENES",
    "SIFTFLOW_CLASSES",
    "SIFTFLOW_GEO_CLASSES",
    "SPLIT_SIZES",
    "SIFTFlow",
]

# Class lists in the order of the official data/*/classes*.txt: label c is CLASSES[c].
SIFTFLOW_CLASSES = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk",
    "desert", "door", "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole",
    "river", "road", "rock", "sand", "sea", "sidewalk", "sign", "sky", "staircase",
    "streetlight", "sun", "tree", "window",
)  # fmt: skip
SIFTFLOW_GEO_CLASSES = ("sky", "horizontal", "vertical")
SPLIT_SIZES = {"test": 200}  # trainval: the paper's 2,488 training images (list not counted)

FOLDER = "sift-flow"
SCENES = "spatial_envelope_256x256_static_8outdoorcategories"  # the data's sub-folder
_SIFTFLOW_ZIP = "http://www.cs.unc.edu/~jtighe/Papers/ECCV10/siftflow/SiftFlowDataset.zip"

_SIFTFLOW_SPLITS = ("trainval", "test")
_SIFTFLOW_TASKS = ("semantic", "geometric", "both")


class SIFTFlow(PairDataset):
    """SIFT Flow with the FCN split: semantic (33 classes) and geometric (3 classes) labels.

    Args:
        split: ``"trainval"`` (training) or ``"test"`` (200 images), the FCN lists.
        root: data root (default ``$FCN_DATA``); the data is in ``root/sift-flow``.
        task: ``"semantic"``: items ``(image, label)``, label 0..32 (:data:`SIFTFLOW_CLASSES`);
            ``"geometric"``: label 0..2 (:data:`SIFTFLOW_GEO_CLASSES`); ``"both"``: items
            ``(image, semantic, geometric)``, as :class:`fcnlib.data.shapes.ShapesDataset` with
            ``geometry=True``, for the paper's two-headed net.
        transforms: joint transform, e.g. :func:`fcnlib.data.transforms.train_transform`. With
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
        self.split = check_choice("split", split, _SIFTFLOW_SPLITS)
        self.task = check_choice("task", task, _SIFTFLOW_TASKS)
        self.root = data_root(root)
        self.folder = folder = self.root / FOLDER
        needed = [folder / d / SCENES for d in ("Images", "SemanticLabels", "GeoLabels")]
        how = (
            f"  1. SiftFlowDataset.zip (linked from the FCN repository's\n"
            f"     data/sift-flow/README.md: {_SIFTFLOW_ZIP}),\n"
            f"     unpacked so that {needed[0]} exists;\n"
            f"  2. the FCN split lists trainval.txt and test.txt, from\n"
            f"     {FCN_REPOSITORY}/tree/master/data/sift-flow, copied into {folder}."
        )
        split_list = folder / f"{split}.txt"
        require_files("SIFT Flow", split, self.root, [folder, *needed, split_list], how)
        fix = f"Copy it again from {FCN_REPOSITORY}/tree/master/data/sift-flow."
        super().__init__(read_ids(split_list, fix=fix), transforms, [split_list])

    def _load(self, name: str) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        path = self.folder / "Images" / SCENES / f"{name}.jpg"
        image = self._image(name, path)
        labels = []
        if self.task != "geometric":
            mat = self.folder / "SemanticLabels" / SCENES / f"{name}.mat"
            labels.append(self._label(name, mat, "S", len(SIFTFLOW_CLASSES), (path, image.shape)))
        if self.task != "semantic":
            mat = self.folder / "GeoLabels" / SCENES / f"{name}.mat"
            n = len(SIFTFLOW_GEO_CLASSES)
            labels.append(self._label(name, mat, "S", n, (path, image.shape), unlabelled=(-1, 0)))
        label = torch.from_numpy(np.stack(labels))  # (1 or 2, H, W)
        return tv_tensors.Image(image), tv_tensors.Mask(label if len(labels) == 2 else label[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image, label = super().__getitem__(index)
        return (image, label[0], label[1]) if self.task == "both" else (image, label)

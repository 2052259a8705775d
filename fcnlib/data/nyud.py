"""NYUDv2 (Silberman et al.): indoor RGB-D images with Gupta et al.'s 40 classes.

1,449 indoor RGB-D images from a Kinect, labelled with the 40 classes of Gupta et al.
(:data:`NYUD_CLASSES`), split into 795 training (``train`` 381 + ``val`` 414) and 654 test
images. Depth enters as raw depth or as Gupta et al.'s HHA encoding
(:func:`fcnlib.data.hha.hha`); the paper's best net, FCN-16s fusing an RGB and an HHA stream
late, reaches 34.0 mean IU and 65.4 pixel accuracy.

On disk, under the data root (``$FCN_DATA``), in the FCN authors' layout::

    nyud/train.txt, val.txt, test.txt (trainval.txt)     ids such as 5001
    nyud/data/images/img_<id>.png                        RGB
    nyud/data/depth/img_<id>.png                         depth, 16-bit, millimetres
    nyud/data/hha/img_<id>.png                           HHA, 8-bit, 3 channels
    nyud/segmentation/img_<id>.mat                       segmentation: 0 void, 1..40 classes

There is no automatic download: the FCN repository's ``data/nyud/README.md`` links the
authors' ``nyud.tar.gz``. Not verified from the sources: the dtype of ``segmentation`` (any
numeric dtype is read) and the 16-bit millimetre depth PNGs (that is how Gupta et al.'s code
reads its depth images, and the FCN layer's mean log-depth 7.844 is about log(2,550 mm)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from fcnlib.data.files import (
    FCN_REPOSITORY,
    PairDataset,
    Transforms,
    check_choice,
    check_size,
    data_root,
    decode,
    read_ids,
    require_files,
)

__all__ = ["FOLDER", "NYUD_CLASSES", "NYUD_MODALITIES", "SPLIT_SIZES", "NYUDv2"]

# NYUDv2: "refridgerator" (sic) as in the official list.
NYUD_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip

NYUD_MODALITIES = ("rgb", "depth", "hha", "rgbd", "rgb-hha")
SPLIT_SIZES = {"train": 381, "val": 414, "trainval": 795, "test": 654}
FOLDER = "nyud"
_NYUD_TAR = "http://dl.caffe.berkeleyvision.org/nyud.tar.gz"
_NYUD_PAGE = "http://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html"
_NYUD_SPLITS = ("train", "val", "trainval", "test")


def _read_depth(path: Path) -> torch.Tensor:
    """A 16-bit depth PNG in millimetres -> float32 (1, H, W) in metres."""
    with Image.open(path) as im:
        millimetres = np.array(im).astype(np.float32)
    return torch.from_numpy(millimetres / 1000)[None]


class NYUDv2(PairDataset):
    """NYUDv2 with Gupta et al.'s 40 classes, in the FCN authors' layout (``root/nyud``).

    Args:
        split: ``"train"`` (381), ``"val"`` (414), ``"trainval"`` (795: the paper's training set;
            ``trainval.txt`` if present, else ``train.txt`` then ``val.txt``) or ``"test"`` (654).
        root: data root (default ``$FCN_DATA``).
        modality: what ``image`` holds, float32:

            * ``"rgb"``: (3, H, W) in [0, 1];
            * ``"depth"``: (1, H, W) in metres (0 = no reading);
            * ``"hha"``: (3, H, W) in [0, 1], Gupta et al.'s HHA images from disk
              (:func:`~fcnlib.data.hha.hha` computes the same encoding from depth);
            * ``"rgbd"``: (4, H, W): RGB in [0, 1], then depth in metres;
            * ``"rgb-hha"``: (6, H, W): RGB, then HHA, the input of
              :class:`fcnlib.models.LateFusion` for the paper's RGB-HHA net.
        transforms: joint transform, e.g. :func:`fcnlib.data.transforms.train_transform`
            (padding adds image 0, i.e. no depth reading, and label 255).

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
        self.split = check_choice("split", split, _NYUD_SPLITS)
        self.modality = check_choice("modality", modality, NYUD_MODALITIES)
        self.root = data_root(root)
        self.folder = folder = self.root / FOLDER
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
            f"     {FCN_REPOSITORY}/tree/master/data/nyud, copied into {folder}.\n"
            f"  The dataset's page: {_NYUD_PAGE}"
        )
        needed = [folder, *lists, folder / "segmentation", *data]
        require_files("NYUDv2", split, self.root, needed, how)
        fix = f"Copy it again from {FCN_REPOSITORY}/tree/master/data/nyud."
        super().__init__([i for f in lists for i in read_ids(f, fix=fix)], transforms, lists)

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
            depth = decode(path, _read_depth, name, fix)  # (1, H, W) m
            # RGB in [0, 1] next to metres
            parts = [(p, x.float() / 255) for p, x in parts] + [(path, depth)]
        first = (parts[0][0], parts[0][1].shape)
        for path, x in parts[1:]:
            check_size(name, (path, x.shape[-2:]), first, fix, what="image")
        mat = self.folder / "segmentation" / f"img_{name}.mat"
        label = self._label(name, mat, "segmentation", len(NYUD_CLASSES), first)
        image = torch.cat([x for _, x in parts])
        return tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(label))

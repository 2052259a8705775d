"""Data: the lab bench every chapter trains on, and the paper's real datasets.

One module per concept:

- :mod:`fcnlib.data.shapes`      the lab bench: synthetic scenes told apart by shape alone
- :mod:`fcnlib.data.labels`      label maps: void (255), VOC's colour map, palette PNGs
- :mod:`fcnlib.data.transforms`  joint image-and-label transforms, the item convention
- :mod:`fcnlib.data.files`       checked file readers, missing-data errors, the dataset base
- :mod:`fcnlib.data.voc`         PASCAL VOC 2011/2012, SBD, seg11valid (the paper's main results)
- :mod:`fcnlib.data.siftflow`    SIFT Flow, semantic and geometric labels
- :mod:`fcnlib.data.nyud`        NYUDv2, RGB-D with 40 classes
- :mod:`fcnlib.data.hha`         Gupta et al.'s HHA encoding of depth
- :mod:`fcnlib.data.context`     PASCAL-Context, the 59-class task
- :mod:`fcnlib.data.fake`        tiny datasets in the real on-disk formats, for tests

Every item is ``(image, label, ...)``: ``image`` float32 (C, H, W) in [0, 1], each label int64
(H, W) holding class ids and 255 for void. The lab bench's names are here as well, as the
chapters import them: ``from fcnlib.data import ShapesDataset``. The real datasets' modules
import torchvision and are loaded when asked for (``from fcnlib.data import voc``).
"""

from fcnlib.data.labels import IGNORE_INDEX
from fcnlib.data.shapes import (
    CLASSES,
    GEO_CLASSES,
    MAX_DEPTH,
    OBJECT_CLASSES,
    SPLITS,
    ShapesClassification,
    ShapesDataset,
)

__all__ = [
    "CLASSES",
    "GEO_CLASSES",
    "IGNORE_INDEX",
    "MAX_DEPTH",
    "OBJECT_CLASSES",
    "SPLITS",
    "ShapesClassification",
    "ShapesDataset",
]

"""fcnlib: Fully Convolutional Networks for semantic segmentation, small and readable.

The paper's vocabulary made executable (Long, Shelhamer & Darrell, CVPR 2015 / PAMI 2017).
One idea per module:

- :mod:`fcnlib.data`     synthetic lab-bench scenes (and, later, real datasets)
- :mod:`fcnlib.metrics`  confusion matrix and the paper's four metrics
- :mod:`fcnlib.patchwise` the pre-FCN baseline: classify a patch per pixel, stitch
- :mod:`fcnlib.viz`      palettes, overlays, figure helpers
- :mod:`fcnlib.config`   device, seeding, the two scales (lab bench / full)
"""

from fcnlib import config, data, metrics, patchwise, viz
from fcnlib.config import Scale, get_scale, pick_device, seed_everything
from fcnlib.data import ShapesClassification, ShapesDataset
from fcnlib.metrics import ConfusionMatrix, Scores

__version__ = "0.1.0"

__all__ = [
    "ConfusionMatrix",
    "Scale",
    "Scores",
    "ShapesClassification",
    "ShapesDataset",
    "config",
    "data",
    "get_scale",
    "metrics",
    "patchwise",
    "pick_device",
    "seed_everything",
    "viz",
]

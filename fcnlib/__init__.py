"""fcnlib: Fully Convolutional Networks for semantic segmentation, small and readable.

The paper's vocabulary made executable (Long, Shelhamer & Darrell, CVPR 2015 / PAMI 2017).
One concept per module, in the paper's order:

Data (sections 4.1 and 5)
- :mod:`fcnlib.data`            the lab bench's scenes, and the real datasets' package: labels,
                                transforms, VOC/SBD, SIFT Flow, NYUDv2 and HHA, PASCAL-Context
From classifier to FCN (3.1)
- :mod:`fcnlib.backbones`       classifiers to start from: TinyVGG (lab), VGG16, AlexNet, GoogLeNet
- :mod:`fcnlib.pretrain`        the lab backbones' pre-training and their shipped weights
- :mod:`fcnlib.models`          convolutionalize, FCN-32s/16s/8s, crops, staged initialisation
- :mod:`fcnlib.receptive_field` receptive field, jump and offset; coordinate maps and crops
Dense outputs from coarse nets (3.2, 3.3)
- :mod:`fcnlib.rarefy`          filter rarefaction: shift-and-stitch in one pass, dilate_to_stride
- :mod:`fcnlib.upsample`        bilinear deconvolution (backwards strided convolution), stitching
Patchwise training is loss sampling (3.4)
- :mod:`fcnlib.loss`            the per-pixel loss: void skipped, summed, sampled, class-weighted
- :mod:`fcnlib.patchwise`       the pre-FCN baseline: classify a patch per pixel, stitch
Training and evaluation (4.3, 5)
- :mod:`fcnlib.train`           optimizer, training loop, evaluation, resumable runs
- :mod:`fcnlib.recipes`         TrainConfig (a run's settings); the paper's and the lab's recipes
- :mod:`fcnlib.checkpoint`      atomic checkpoints, RNG state, safe loading
- :mod:`fcnlib.record`          a run's record: one writer (a lock), kept apart, repaired on resume
- :mod:`fcnlib.precision`       mixed precision: amp resolved once per run, recorded, kept on resume
- :mod:`fcnlib.distributed`     torchrun / DistributedDataParallel helpers
- :mod:`fcnlib.metrics`         confusion matrix and the paper's four metrics
- :mod:`fcnlib.infer`           labels for images of any size, in batches
- :mod:`fcnlib.export`          ONNX files of the nets, and the scene bank of the book's live pages
Around them
- :mod:`fcnlib.viz`             overlays and figures drawn from the nets themselves
- :mod:`fcnlib.config`          device, seeding, the two scales (lab bench / full)
- :mod:`fcnlib.system`          the machine: CPU model and bf16 flags, cores, intra-op threads
- :mod:`fcnlib.modes`           eval mode for a while, each layer's own train/eval flag restored
- :mod:`fcnlib.progress`        progress bars that move per batch in terminals and notebooks
- :mod:`fcnlib.cli`, :mod:`fcnlib.bench`, :mod:`fcnlib.book`   command line, benchmarks, glue
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# ``import fcnlib`` loads nothing heavy: each submodule, and each name re-exported below, is
# imported on first use (PEP 562), so ``python -m fcnlib --help`` does not wait for
# torchvision or matplotlib. ``from fcnlib import fcn8s`` and ``fcnlib.viz`` work as usual.
_SUBMODULES = frozenset(
    {
        "backbones",
        "bench",
        "book",
        "checkpoint",
        "cli",
        "config",
        "data",
        "distributed",
        "export",
        "infer",
        "loss",
        "metrics",
        "models",
        "modes",
        "patchwise",
        "precision",
        "pretrain",
        "progress",
        "rarefy",
        "receptive_field",
        "recipes",
        "record",
        "system",
        "train",
        "upsample",
        "viz",
    }
)
_REEXPORTS = {
    "Scale": "config",
    "get_scale": "config",
    "pick_device": "config",
    "seed_everything": "config",
    "ShapesClassification": "data",
    "ShapesDataset": "data",
    "ConfusionMatrix": "metrics",
    "Scores": "metrics",
    "convolutionalize": "models",
    "fcn8s": "models",
    "fcn16s": "models",
    "fcn32s": "models",
}

if TYPE_CHECKING:
    from fcnlib import (
        backbones,
        config,
        data,
        metrics,
        models,
        patchwise,
        receptive_field,
        upsample,
        viz,
    )
    from fcnlib.config import Scale, get_scale, pick_device, seed_everything
    from fcnlib.data import ShapesClassification, ShapesDataset
    from fcnlib.metrics import ConfusionMatrix, Scores
    from fcnlib.models import convolutionalize, fcn8s, fcn16s, fcn32s


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # also binds fcnlib.<name>
    if name in _REEXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_REEXPORTS[name]}"), name)
        globals()[name] = value  # the next lookup finds it without coming here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


__version__ = "0.1.0"

__all__ = [
    "ConfusionMatrix",
    "Scale",
    "Scores",
    "ShapesClassification",
    "ShapesDataset",
    "backbones",
    "config",
    "convolutionalize",
    "data",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "get_scale",
    "metrics",
    "models",
    "patchwise",
    "pick_device",
    "receptive_field",
    "seed_everything",
    "upsample",
    "viz",
]

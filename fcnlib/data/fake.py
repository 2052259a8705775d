"""Tiny datasets written in the real on-disk formats, so that tests and CI run the real code.

No dataset can be downloaded in a test, so each writer here makes a few images of a dataset in
exactly the files and layout the loaders read (JPEG or PNG images, palette PNG or MATLAB labels,
split lists): :func:`write_fake_voc`, :func:`write_fake_sbd`, :func:`write_fake_siftflow`,
:func:`write_fake_nyud` and :func:`write_fake_context`. Each returns a :class:`FakeData`
holding what it wrote, for a test to compare the loaders' items with. Labels are rectangles of
random classes outlined in void (or unlabelled) pixels; images colour each pixel by its class,
so misalignment shows at a glance. ``content="scenes"`` (VOC and SBD) writes lab-bench scenes
instead, something worth training on.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fcnlib.data import context, nyud, siftflow
from fcnlib.data.files import data_root
from fcnlib.data.hha import LEVEL, Intrinsics, hha
from fcnlib.data.labels import IGNORE_INDEX, save_label_png, voc_palette
from fcnlib.data.voc import VOC_CLASSES, check_year, dataset_dir

__all__ = [
    "FakeData",
    "write_fake_context",
    "write_fake_nyud",
    "write_fake_sbd",
    "write_fake_siftflow",
    "write_fake_voc",
    "write_sbd_mat",
]


@dataclass
class FakeData:
    """What a fake-data writer wrote.

    Attributes:
        path: the dataset directory (``dataset_dir(name, root)`` for VOC and SBD).
        splits: split name -> ids, in file order.
        labels: id -> the label written: uint8 (H, W) for VOC and SBD, the *raw* array (before
            any class shift) for the other datasets.
        images: id -> the uint8 (H, W, 3) image before JPEG compression.
        extras: kind -> id -> array, what else was written (SIFT Flow's geometric labels,
            NYUDv2's depth and HHA images).
    """

    path: Path
    splits: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


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
    ``"scenes"``: a lab-bench scene (:class:`fcnlib.data.shapes.ShapesDataset`) chosen by the id and
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
    year = check_year(year)
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


def write_sbd_mat(path: Path, label: np.ndarray) -> None:
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
    folder = data_root(root) / "sbd"
    out = FakeData(folder, {"train": list(ids_train), "val": list(ids_val)})
    for sub in ("img", "cls"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, ids in out.splits.items():
        _write_lines(folder / f"{split}.txt", ids)
    for name in sorted({*ids_train, *ids_val}):
        label, image = _fake_pair(rng, name, size, content=content, void=void, seed=seed)
        Image.fromarray(image).save(folder / "img" / f"{name}.jpg", quality=95)
        write_sbd_mat(folder / "cls" / f"{name}.mat", label)
        out.labels[name], out.images[name] = label, image
    return out


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
    size = _check_fake_size(size)
    rng = np.random.default_rng(seed)
    folder = data_root(root) / siftflow.FOLDER
    ids = [f"{_OUTDOOR[i % len(_OUTDOOR)]}_fake{i}" for i in range(n_trainval + n_test)]
    out = FakeData(folder, {"trainval": ids[:n_trainval], "test": ids[n_trainval:]})
    out.extras["geometric"] = {}
    for split, split_ids in out.splits.items():
        _write_lines(folder / f"{split}.txt", split_ids)
    (folder / "Images" / siftflow.SCENES).mkdir(parents=True, exist_ok=True)
    for name in ids:
        semantic = _fake_raw_label(rng, size, range(1, len(siftflow.SIFTFLOW_CLASSES) + 1), 0)
        geometric = _fake_raw_label(rng, size, range(1, len(siftflow.SIFTFLOW_GEO_CLASSES) + 1), -1)
        image = _fake_image(rng, semantic)
        Image.fromarray(image).save(folder / "Images" / siftflow.SCENES / f"{name}.jpg", quality=95)
        _savemat(folder / "SemanticLabels" / siftflow.SCENES / f"{name}.mat", {"S": semantic * 1.0})
        _savemat(folder / "GeoLabels" / siftflow.SCENES / f"{name}.mat", {"S": geometric * 1.0})
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
    h, w = size = _check_fake_size(size)
    k = intrinsics or Intrinsics(fx=w / 2, fy=w / 2, cx=(w - 1) / 2, cy=(h - 1) / 2)
    rng = np.random.default_rng(seed)
    folder = data_root(root) / nyud.FOLDER
    ids = [str(5001 + i) for i in range(n_train + n_val + n_test)]
    a, b = n_train, n_train + n_val
    out = FakeData(folder, {"train": ids[:a], "val": ids[a:b], "test": ids[b:]})
    out.extras = {"depth": {}, "hha": {}}
    for split, split_ids in out.splits.items():
        _write_lines(folder / f"{split}.txt", split_ids)
    for sub in ("images", "depth", "hha"):
        (folder / "data" / sub).mkdir(parents=True, exist_ok=True)
    for name in ids:
        raw = _fake_raw_label(rng, size, range(1, len(nyud.NYUD_CLASSES) + 1), 0).astype(np.uint8)
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
_CONTEXT_RAW_IDS = dict(zip(context.CONTEXT_CLASSES[1:], (
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
    size = _check_fake_size(size)
    rng = np.random.default_rng(seed)
    base = data_root(root)
    voc_folder, folder = base / "VOCdevkit" / "VOC2010", base / context.FOLDER
    ids = [f"2010_{i:06d}" for i in range(n_train + n_val)]
    out = FakeData(folder, {"train": ids[:n_train], "val": ids[n_train:], "trainval": ids})
    for split, split_ids in out.splits.items():
        _write_lines(voc_folder / "ImageSets" / "Main" / f"{split}.txt", split_ids)
    names = {raw_id: context.RAW_NAMES.get(n, n) for n, raw_id in _CONTEXT_RAW_IDS.items()}
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

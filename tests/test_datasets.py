"""SIFT Flow, NYUDv2 (and HHA), PASCAL-Context: loaders on tiny fixtures in the real formats."""

import errno
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from fcnlib.data import voc
from fcnlib.data.context import CONTEXT_CLASSES, PascalContext
from fcnlib.data.fake import write_fake_context, write_fake_nyud, write_fake_siftflow
from fcnlib.data.files import decode, read_rgb
from fcnlib.data.hha import LEVEL, NYUD_INTRINSICS, Intrinsics, hha
from fcnlib.data.labels import voc_palette
from fcnlib.data.nyud import NYUD_CLASSES, NYUDv2
from fcnlib.data.nyud import SPLIT_SIZES as NYUD_SPLIT_SIZES
from fcnlib.data.siftflow import SIFTFLOW_CLASSES, SIFTFLOW_GEO_CLASSES, SIFTFlow

SCENES = "spatial_envelope_256x256_static_8outdoorcategories"


def _shifted(raw, n_classes):
    """The official layers' convention, stated independently: 1..n -> 0..n-1, the rest void."""
    raw = np.asarray(raw).astype(np.int64)
    return torch.from_numpy(np.where((raw >= 1) & (raw <= n_classes), raw - 1, 255))


@pytest.fixture
def siftflow(tmp_path):
    return write_fake_siftflow(tmp_path, n_trainval=3, n_test=2, size=(24, 32), seed=1)


@pytest.fixture
def nyud(tmp_path):
    return write_fake_nyud(tmp_path, n_train=2, n_val=1, n_test=2, size=(24, 32), seed=2)


@pytest.fixture
def context(tmp_path):
    return write_fake_context(tmp_path, n_train=3, n_val=2, size=(32, 48), seed=3)


def test_class_lists_and_split_sizes():
    assert (len(SIFTFLOW_CLASSES), len(SIFTFLOW_GEO_CLASSES)) == (33, 3)
    assert len(NYUD_CLASSES) == 40 and NYUD_CLASSES[:2] == ("wall", "floor")
    assert len(CONTEXT_CLASSES) == 60 and CONTEXT_CLASSES[0] == "background"
    assert len(set(CONTEXT_CLASSES)) == 60
    nyud = NYUD_SPLIT_SIZES
    assert nyud["train"] + nyud["val"] == nyud["trainval"]
    assert nyud["trainval"] + nyud["test"] == 1449  # ids 5001..6449


# --------------------------------------------------------------------------------------------
# SIFT Flow
# --------------------------------------------------------------------------------------------


def test_fake_siftflow_is_in_the_official_format(tmp_path, siftflow):
    folder = tmp_path / "sift-flow"
    assert siftflow.path == folder.resolve()
    assert (folder / "test.txt").read_text().split() == siftflow.splits["test"]
    name = siftflow.splits["trainval"][0]
    assert Image.open(folder / "Images" / SCENES / f"{name}.jpg").format == "JPEG"
    semantic = scipy.io.loadmat(folder / "SemanticLabels" / SCENES / f"{name}.mat")["S"]
    geometric = scipy.io.loadmat(folder / "GeoLabels" / SCENES / f"{name}.mat")["S"]
    assert (semantic == siftflow.labels[name]).all() and (semantic == 0).any()
    assert (geometric == siftflow.extras["geometric"][name]).all() and (geometric == -1).any()
    assert set(np.unique(geometric)) <= {-1, 1, 2, 3}


@pytest.mark.parametrize("split", ["trainval", "test"])
def test_siftflow_items_match_the_fixture(tmp_path, siftflow, split):
    both = SIFTFlow(split, root=tmp_path, task="both")
    semantic_only = SIFTFlow(split, root=tmp_path)
    geometric_only = SIFTFlow(split, root=tmp_path, task="geometric")
    assert both.ids == siftflow.splits[split] and len(both) == len(siftflow.splits[split])
    for i, name in enumerate(both.ids):
        image, semantic, geometric = both[i]
        assert image.shape == (3, 24, 32) and image.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1
        # semantic 0 and geometric -1 (unlabelled) -> 255; classes shifted down by one
        assert semantic.dtype == geometric.dtype == torch.int64
        assert torch.equal(semantic, _shifted(siftflow.labels[name], 33))
        assert torch.equal(geometric, _shifted(siftflow.extras["geometric"][name], 3))
        assert (semantic == 255).any() and semantic[semantic != 255].max() <= 32
        assert torch.equal(semantic_only[i][1], semantic)
        assert torch.equal(geometric_only[i][1], geometric)
        written = torch.from_numpy(siftflow.images[name]).permute(2, 0, 1) / 255
        assert (image - written).abs().mean() < 0.05  # JPEG: lossy, more so on noise


def test_siftflow_geometric_zero_is_void_too(tmp_path, siftflow):
    name = siftflow.splits["test"][0]
    raw = np.tile(np.array([-1.0, 0, 1, 2, 3]), (24, 7))[:, :32]  # (24, 32)
    scipy.io.savemat(tmp_path / "sift-flow" / "GeoLabels" / SCENES / f"{name}.mat", {"S": raw})
    _, label = SIFTFlow("test", root=tmp_path, task="geometric")[0]
    assert label[0, :5].tolist() == [255, 255, 0, 1, 2]


def test_siftflow_both_flips_image_and_both_labels_together(tmp_path, siftflow):
    plain = SIFTFlow("trainval", root=tmp_path, task="both")[0]
    flipping = SIFTFlow("trainval", root=tmp_path, task="both",
                           transforms=voc.train_transform(crop=None, scale=None))  # fmt: skip
    outcomes = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out = flipping[0]
        flipped = all(torch.equal(o, p.flip(-1)) for o, p in zip(out, plain, strict=True))
        kept = all(torch.equal(o, p) for o, p in zip(out, plain, strict=True))
        assert flipped or kept
        outcomes.add(flipped)
    assert outcomes == {True, False}


def test_siftflow_batches_with_the_voc_training_transform(tmp_path, siftflow):
    data = SIFTFlow("trainval", root=tmp_path, task="both",
                       transforms=voc.train_transform(crop=40, scale=(0.5, 2.0)))  # fmt: skip
    torch.manual_seed(0)
    images, semantic, geometric = next(iter(DataLoader(data, batch_size=3)))
    assert images.shape == (3, 3, 40, 40) and images.dtype == torch.float32
    assert semantic.shape == geometric.shape == (3, 40, 40)
    padded = (images == 0).all(1)
    assert (semantic[padded] == 255).all() and (geometric[padded] == 255).all()
    assert set(geometric.unique().tolist()) <= {0, 1, 2, 255}


def test_siftflow_compact_items_are_as_decoded_and_batch_to_the_float_ones(tmp_path, siftflow):
    from fcnlib.train import batch_to

    def first(compact):
        data = SIFTFlow("trainval", root=tmp_path, task="both",
                           transforms=voc.train_transform(crop=40, compact=compact))  # fmt: skip
        torch.manual_seed(0)
        return next(iter(DataLoader(data, batch_size=3)))

    images, semantic, geometric = first(compact=True)
    assert images.dtype == semantic.dtype == geometric.dtype == torch.uint8
    floats = first(compact=False)
    assert floats[0].dtype == torch.float32 and floats[1].dtype == torch.int64
    for label, want in ((semantic, floats[1]), (geometric, floats[2])):
        x, y = batch_to(images, label, "cpu")
        assert torch.equal(x, floats[0]) and torch.equal(y, want)


# --------------------------------------------------------------------------------------------
# NYUDv2
# --------------------------------------------------------------------------------------------


def test_fake_nyud_is_in_the_fcn_format(tmp_path, nyud):
    folder = tmp_path / "nyud"
    assert (folder / "train.txt").read_text().split() == nyud.splits["train"] == ["5001", "5002"]
    name = nyud.splits["test"][0]
    depth = Image.open(folder / "data" / "depth" / f"img_{name}.png")
    assert depth.mode.startswith("I") and np.array(depth).max() > 255  # 16 bits, millimetres
    assert (np.array(depth) == nyud.extras["depth"][name]).all()
    assert Image.open(folder / "data" / "hha" / f"img_{name}.png").mode == "RGB"
    assert Image.open(folder / "data" / "images" / f"img_{name}.png").mode == "RGB"
    mat = scipy.io.loadmat(folder / "segmentation" / f"img_{name}.mat")
    assert (mat["segmentation"] == nyud.labels[name]).all()


@pytest.mark.parametrize(
    ("modality", "channels"), [("rgb", 3), ("depth", 1), ("hha", 3), ("rgbd", 4), ("rgb-hha", 6)]
)
def test_nyud_modalities(tmp_path, nyud, modality, channels):
    data = NYUDv2("test", root=tmp_path, modality=modality)
    assert data.ids == nyud.splits["test"]
    for (image, label), name in zip(data, data.ids, strict=True):
        assert image.shape == (channels, 24, 32) and image.dtype == torch.float32
        assert label.shape == (24, 32) and label.dtype == torch.int64
        assert torch.equal(label, _shifted(nyud.labels[name], 40))  # 0 -> void, 1..40 -> 0..39
        rgb = torch.from_numpy(nyud.images[name]).permute(2, 0, 1) / 255  # PNG: lossless
        hha = torch.from_numpy(nyud.extras["hha"][name]).permute(2, 0, 1) / 255
        depth = torch.from_numpy(nyud.extras["depth"][name].astype(np.float32))[None] / 1000
        expected = {"rgb": [rgb], "depth": [depth], "hha": [hha], "rgbd": [rgb, depth]}
        expected["rgb-hha"] = [rgb, hha]
        torch.testing.assert_close(image, torch.cat(expected[modality]))


def test_nyud_hha_images_are_the_hha_of_their_depth(tmp_path):
    k = Intrinsics(fx=20.0, fy=20.0, cx=15.5, cy=11.5)
    fake = write_fake_nyud(tmp_path, n_train=1, n_val=0, n_test=0, size=(24, 32), intrinsics=k)
    depth, _ = NYUDv2("train", root=tmp_path, modality="depth")[0]
    encoded, _ = NYUDv2("train", root=tmp_path, modality="hha")[0]
    torch.testing.assert_close(encoded, hha(depth[0], k, gravity=LEVEL))
    assert (np.asarray(fake.extras["hha"]["5001"])[..., 2] == 38).any()  # some floor in view


def test_nyud_trainval_is_train_then_val_unless_listed(tmp_path, nyud):
    assert NYUDv2("trainval", root=tmp_path).ids == nyud.splits["train"] + nyud.splits["val"]
    (tmp_path / "nyud" / "trainval.txt").write_text("5003\n5001\n")
    assert NYUDv2("trainval", root=tmp_path).ids == ["5003", "5001"]


def test_nyud_rgbd_crop_and_mirror_keep_every_pixel_aligned(tmp_path, nyud):
    data = NYUDv2("train", root=tmp_path, modality="rgbd",
                     transforms=voc.train_transform(crop=40, scale=None))  # fmt: skip
    palette = voc_palette().float()
    for seed in range(6):
        torch.manual_seed(seed)
        image, label = data[seed % 2]
        assert image.shape == (4, 40, 40) and label.shape == (40, 40)
        pad = (image == 0).all(0)
        assert pad.sum() == 40 * 40 - 24 * 32 and (label[pad] == 255).all()
        # the fake's pixels are their raw class's colour +-3: the label says which, after the crop
        labelled = label != 255
        colour = palette[label[labelled] + 1].T  # raw class = label + 1
        assert (image[:3, labelled] * 255 - colour).abs().max() <= 3.01
        assert (image[3][~pad] > 0).all()  # depth moved with the image, no hole opened


# --------------------------------------------------------------------------------------------
# PASCAL-Context
# --------------------------------------------------------------------------------------------

OFFICIAL_RENAMES = {"table": "diningtable", "bedclothes": "bedcloth", "cloth": "clothes"}


def _context_expected(labels_txt, raw):
    """The 59-class task stated independently: a raw class is kept iff its name (after the
    official layer's three renames) is one of the 59, else it is background (0)."""
    names = {}
    for line in labels_txt.read_text().splitlines():
        raw_id, name = line.split(":")
        names[int(raw_id)] = name.strip()
    out = np.zeros(raw.shape, dtype=np.int64)
    for r, name in names.items():
        name = OFFICIAL_RENAMES.get(name, name)
        if name in CONTEXT_CLASSES:
            out[raw == r] = CONTEXT_CLASSES.index(name)
    return torch.from_numpy(out)


def test_fake_context_is_in_the_official_format(tmp_path, context):
    folder = tmp_path / "pascal-context"
    assert context.path == folder.resolve()
    lines = (folder / "labels.txt").read_text().splitlines()
    assert lines[:3] == ["1: accordion", "2: aeroplane", "3: air conditioner"]
    assert "397: table" in lines and "459: wool" in lines
    name = context.splits["val"][0]
    mat = scipy.io.loadmat(folder / "trainval" / f"{name}.mat")
    assert mat["LabelMap"].dtype == np.uint16 and (mat["LabelMap"] == context.labels[name]).all()
    main = tmp_path / "VOCdevkit" / "VOC2010" / "ImageSets" / "Main"
    assert (main / "train.txt").read_text().split() == context.splits["train"]
    assert Image.open(tmp_path / "VOCdevkit/VOC2010/JPEGImages" / f"{name}.jpg").format == "JPEG"


@pytest.mark.parametrize("split", ["train", "val"])
def test_context_labels_are_the_59_class_task(tmp_path, context, split):
    data = PascalContext(split, root=tmp_path)
    void = PascalContext(split, root=tmp_path, background="void")
    assert data.ids == context.splits[split]
    labels_txt = tmp_path / "pascal-context" / "labels.txt"
    for i, name in enumerate(data.ids):
        image, label = data[i]
        assert image.shape == (3, 32, 48) and label.dtype == torch.int64
        raw = context.labels[name]
        assert torch.equal(label, _context_expected(labels_txt, raw))
        assert (label == 0).any() and label.max() <= 59
        shifted = torch.where(label == 0, 255, label - 1)
        assert torch.equal(void[i][1], shifted)
        written = torch.from_numpy(context.images[name]).permute(2, 0, 1) / 255
        assert (image - written).abs().mean() < 0.05


def test_context_renamed_classes_and_other_raw_classes(tmp_path, context):
    name = context.splits["train"][0]
    raw = np.array([[0, 1, 2, 3, 19, 80, 397, 431, 459, 458]], dtype=np.uint16)
    scipy.io.savemat(tmp_path / "pascal-context" / "trainval" / f"{name}.mat", {"LabelMap": raw})
    Image.new("RGB", (10, 1)).save(tmp_path / "VOCdevkit/VOC2010/JPEGImages" / f"{name}.jpg")
    _, label = PascalContext("train", root=tmp_path)[0]
    c = CONTEXT_CLASSES.index
    assert label[0].tolist() == [
        0, 0, c("aeroplane"), 0, c("bedcloth"), c("clothes"), c("diningtable"), 0, 0, c("wood")
    ]  # fmt: skip


def test_context_33_classes_is_refused_with_the_reason(tmp_path, context):
    with pytest.raises(NotImplementedError, match=r"(?s)33-class.*Mottaghi.*not be verified"):
        PascalContext("val", root=tmp_path, n_classes=33)
    with pytest.raises(ValueError, match="n_classes"):
        PascalContext("val", root=tmp_path, n_classes=21)
    with pytest.raises(ValueError, match="background"):
        PascalContext("val", root=tmp_path, background="ignore")


def test_context_finds_voc2010_in_the_fcn_layout(tmp_path, context):
    shutil.move(tmp_path / "VOCdevkit" / "VOC2010", tmp_path / "pascal" / "VOC2010")
    data = PascalContext("val", root=tmp_path)
    assert data.voc_folder == (tmp_path / "pascal" / "VOC2010").resolve()
    assert len(data) == 2 and data[1][0].shape == (3, 32, 48)


def test_context_labels_txt_without_a_task_class_is_named(tmp_path, context):
    labels_txt = tmp_path / "pascal-context" / "labels.txt"
    labels_txt.write_text(labels_txt.read_text().replace("80: cloth\n", ""))
    with pytest.raises(ValueError, match=r"does not list the class 'cloth'"):
        PascalContext("train", root=tmp_path)


@pytest.mark.parametrize("line", ["eighty: cloth", "80 cloth", "80:"])
def test_context_labels_txt_line_that_does_not_parse_is_named(tmp_path, context, line):
    labels_txt = tmp_path / "pascal-context" / "labels.txt"
    lines = labels_txt.read_text().splitlines()
    lines[2] = line
    labels_txt.write_text("\n".join(lines))
    expected = rf"labels.txt, line 3: expected '<raw id>: <name>'.*got '{line}'"
    with pytest.raises(ValueError, match=expected) as info:
        PascalContext("train", root=tmp_path)
    assert str(labels_txt.resolve()) in str(info.value)


# --------------------------------------------------------------------------------------------
# A bad file is named: wrong label size, class ids the dataset does not define, damaged files
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One loader on a fresh fake dataset: where its first item's files are, what it accepts."""

    write: Callable[[Path], object]  # the fake writer
    load: Callable[[Path], Dataset]
    image: str  # the image's path under the root, {} is the id
    label: str  # the label's .mat under the root
    variable: str
    split_list: str
    valid: tuple[int, int]  # raw ids the file may hold, inclusive
    bad: tuple[int, ...]  # raw ids it may not


SIFT_IMAGE = f"sift-flow/Images/{SCENES}/{{}}.jpg"
CASES = {
    "siftflow-semantic": Case(
        lambda r: write_fake_siftflow(r, n_trainval=2, n_test=1, size=(24, 32)),
        lambda r: SIFTFlow("trainval", root=r),
        SIFT_IMAGE, f"sift-flow/SemanticLabels/{SCENES}/{{}}.mat", "S",
        "sift-flow/trainval.txt", (0, 33), (34, -1, 255),
    ),
    "siftflow-geometric": Case(
        lambda r: write_fake_siftflow(r, n_trainval=2, n_test=1, size=(24, 32)),
        lambda r: SIFTFlow("trainval", root=r, task="both"),
        SIFT_IMAGE, f"sift-flow/GeoLabels/{SCENES}/{{}}.mat", "S",
        "sift-flow/trainval.txt", (-1, 3), (4, -2, 33),
    ),
    "nyud": Case(
        lambda r: write_fake_nyud(r, n_train=2, n_val=1, n_test=1, size=(24, 32)),
        lambda r: NYUDv2("train", root=r),
        "nyud/data/images/img_{}.png", "nyud/segmentation/img_{}.mat", "segmentation",
        "nyud/train.txt", (0, 40), (41, -1, 255),
    ),
    "context": Case(
        lambda r: write_fake_context(r, n_train=2, n_val=1, size=(24, 32)),
        lambda r: PascalContext("train", root=r),
        "VOCdevkit/VOC2010/JPEGImages/{}.jpg", "pascal-context/trainval/{}.mat", "LabelMap",
        "VOCdevkit/VOC2010/ImageSets/Main/train.txt", (0, 459), (460, 65535, -1),
    ),
}  # fmt: skip


@pytest.fixture(params=list(CASES))
def case(request, tmp_path):
    """(Case, the first item's id) on a fresh fake dataset under tmp_path."""
    case = CASES[request.param]
    case.write(tmp_path)
    return case, case.load(tmp_path).ids[0]


def _write_label(case, root, name, label):
    scipy.io.savemat(root / case.label.format(name), {case.variable: label.astype(np.int32)})


def _assert_names(message, root, case, name, *files):
    assert repr(name) in message and str((root / case.split_list).resolve()) in message
    for f in files:
        assert str((root / f.format(name)).resolve()) in message


@pytest.mark.parametrize("shape", [(20, 32), (24, 31), (32, 24)])
def test_label_of_another_size_than_its_image_is_named(tmp_path, case, shape):
    case, name = case
    _write_label(case, tmp_path, name, np.full(shape, case.valid[1]))
    with pytest.raises(ValueError, match=r"expected shape \(24, 32\)") as info:
        case.load(tmp_path)[0]
    _assert_names(str(info.value), tmp_path, case, name, case.image, case.label)
    assert f"has shape {shape}" in str(info.value)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_class_ids_the_dataset_does_not_define_are_named(tmp_path, case, which):
    case, name = case
    bad = case.bad[which]
    label = np.full((24, 32), case.valid[1])
    label[5, 7] = bad
    _write_label(case, tmp_path, name, label)
    with pytest.raises(ValueError, match=rf"class ids \[{bad}\]") as info:
        case.load(tmp_path)[0]
    _assert_names(str(info.value), tmp_path, case, name, case.label)


def test_every_raw_id_the_dataset_defines_loads(tmp_path, case):
    case, name = case
    low, high = case.valid
    label = np.resize(np.arange(low, high + 1), (24, 32))  # every id at least once
    _write_label(case, tmp_path, name, label)
    item = case.load(tmp_path)[0]
    assert all(x.shape[-2:] == (24, 32) for x in item)


@pytest.mark.parametrize("which", ["image", "label"])
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_corrupt_file_is_named(tmp_path, case, which, damage):
    case, name = case
    path = tmp_path / getattr(case, which).format(name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a file" * 8)
    with pytest.raises(OSError, match="truncated or corrupt") as info:
        case.load(tmp_path)[0]
    _assert_names(str(info.value), tmp_path, case, name, getattr(case, which))
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("which", ["image", "label"])
def test_missing_file_is_named_as_missing(tmp_path, case, which):
    case, name = case
    path = tmp_path / getattr(case, which).format(name)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=f"{path.resolve()} is missing") as info:
        case.load(tmp_path)[0]
    _assert_names(str(info.value), tmp_path, case, name)
    assert "truncated" not in str(info.value)


def test_empty_file_is_named_as_empty(tmp_path, case):
    case, name = case
    path = tmp_path / case.image.format(name)
    path.write_bytes(b"")
    with pytest.raises(OSError, match=r"The file is damaged: empty \(0 bytes\)") as info:
        case.load(tmp_path)[0]
    _assert_names(str(info.value), tmp_path, case, name, case.image)


def test_label_file_without_the_variable_is_named(tmp_path, case):
    case, name = case
    scipy.io.savemat(tmp_path / case.label.format(name), {"labels": np.zeros((24, 32))})
    expected = rf"has no variable '{case.variable}' \(it holds \['labels'\]\)"
    with pytest.raises(ValueError, match=expected) as info:
        case.load(tmp_path)[0]
    _assert_names(str(info.value), tmp_path, case, name, case.label)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_split_list_is_refused_naming_the_file(tmp_path, case, content):
    case, _ = case
    split_list = (tmp_path / case.split_list).resolve()
    split_list.write_text(content)
    with pytest.raises(ValueError, match=f"{split_list} lists no images") as info:
        case.load(tmp_path)  # not a DataLoader's "num_samples=0" later
    assert "Copy it again from" in str(info.value) or "fetch them again" in str(info.value)


def test_unreadable_or_folder_in_place_of_a_file_is_named(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG")

    def denied(p):
        raise PermissionError(errno.EACCES, "Permission denied", str(p))

    with pytest.raises(PermissionError, match=rf"sample 'a': {path} cannot be read") as info:
        decode(path, denied, "a", "fix")
    assert "truncated" not in str(info.value)
    with pytest.raises(IsADirectoryError, match=rf"sample 'a': {tmp_path} is a folder"):
        decode(tmp_path, read_rgb, "a", "fix")


@pytest.mark.parametrize(("modality", "sub"), [("rgb-hha", "hha"), ("rgbd", "depth")])
def test_nyud_second_modality_of_another_size_is_named(tmp_path, nyud, modality, sub):
    name = nyud.splits["train"][0]
    path = tmp_path / "nyud" / "data" / sub / f"img_{name}.png"
    with Image.open(path) as im:
        im.crop((0, 0, 32, 20)).save(path)
    with pytest.raises(ValueError, match=r"expected shape \(24, 32\)") as info:
        NYUDv2("train", root=tmp_path, modality=modality)[0]
    assert str(path.resolve()) in str(info.value) and "images/img_5001.png" in str(info.value)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(OSError, match=f"could not decode {path.resolve()}"):
        NYUDv2("train", root=tmp_path, modality=modality)[0]


# --------------------------------------------------------------------------------------------
# Missing data, arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "where", "source"),
    [
        (lambda r: SIFTFlow("test", root=r), "sift-flow", "SiftFlowDataset.zip"),
        (lambda r: NYUDv2("train", root=r), "nyud", "nyud.tar.gz"),
        (lambda r: PascalContext("val", root=r), "pascal-context", "roozbeh/pascal-context"),
    ],
)
def test_missing_data_error_says_what_where_and_from_where(tmp_path, make, where, source):
    root = tmp_path / "data"
    with pytest.raises(voc.DatasetNotFoundError) as info:
        make(root)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert f"{root.resolve() / where} does not exist" in message
    assert f"data root {root.resolve()}" in message
    assert "no automatic download" in message and source in message
    assert "github.com/shelhamer/fcn.berkeleyvision.org" in message or where == "pascal-context"


def test_missing_pieces_are_named(tmp_path, siftflow, nyud, context):
    (tmp_path / "sift-flow" / "test.txt").unlink()
    assert len(SIFTFlow("trainval", root=tmp_path)) == 3
    with pytest.raises(voc.DatasetNotFoundError, match=r"sift-flow/test\.txt does not exist"):
        SIFTFlow("test", root=tmp_path)
    shutil.rmtree(tmp_path / "nyud" / "data" / "hha")
    assert len(NYUDv2("train", root=tmp_path, modality="rgbd")) == 2
    with pytest.raises(voc.DatasetNotFoundError, match="nyud/data/hha does not exist"):
        NYUDv2("train", root=tmp_path, modality="rgb-hha")
    shutil.rmtree(tmp_path / "VOCdevkit")
    with pytest.raises(voc.DatasetNotFoundError, match=r"(?s)VOC2010.*VOCDetection\("):
        PascalContext("train", root=tmp_path)


def test_default_root_is_fcn_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_DATA", str(tmp_path))
    with pytest.raises(voc.DatasetNotFoundError, match=str(tmp_path.resolve())):
        NYUDv2()
    write_fake_nyud(tmp_path, n_train=1, n_val=1, n_test=1, size=(8, 8))
    assert len(NYUDv2()) == 1 and len(NYUDv2("trainval")) == 2


def test_bad_arguments_say_what_is_expected(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        SIFTFlow("train", root=tmp_path)
    with pytest.raises(ValueError, match="task must be one of"):
        SIFTFlow("test", root=tmp_path, task="depth")
    with pytest.raises(ValueError, match="modality must be one of"):
        NYUDv2("test", root=tmp_path, modality="hhd")
    with pytest.raises(ValueError, match="size"):
        write_fake_nyud(tmp_path, size=(0, 4))


# --------------------------------------------------------------------------------------------
# HHA
# --------------------------------------------------------------------------------------------

K = Intrinsics(fx=60.0, fy=60.0, cx=63.5, cy=47.5)  # a 128x96 camera, 93 degrees wide


def _floor_and_wall(camera_height=1.2, wall=5.0, k=K, size=(96, 128)):
    """Depth (m) seen by a level camera: a floor camera_height below it, a wall ahead."""
    h, w = size
    rows = (torch.arange(h, dtype=torch.float64)[:, None] - k.cy) / k.fy  # ray's y / z
    floor = torch.where(rows > 0, camera_height / rows, math.inf)
    depth = torch.minimum(floor, torch.tensor(wall, dtype=torch.float64)).expand(h, w)
    return depth.clone(), rows[:, 0] > camera_height / wall  # depth, rows that see floor


def _pitched_floor(pitch_deg=45.0, camera_height=1.5, k=K, size=(96, 128)):
    """Depth (m) of a floor seen by a camera pitched down: every ray hits the floor."""
    h, w = size
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                          torch.arange(w, dtype=torch.float64), indexing="ij")  # fmt: skip
    t = math.radians(pitch_deg)
    down = torch.tensor([0.0, math.cos(t), math.sin(t)], dtype=torch.float64)  # camera frame
    rays = torch.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, torch.ones_like(u)])
    along = (rays * down[:, None, None]).sum(0)
    assert (along > 0).all()
    return camera_height / along  # z of the hit: the ray has z = 1


def _bytes(encoded):
    return (encoded * 255).round().long()


def test_hha_is_three_bytes_per_pixel():
    depth, _ = _floor_and_wall()
    encoded = hha(depth, K)
    assert encoded.shape == (3, 96, 128) and encoded.dtype == torch.float32
    assert encoded.min() >= 0 and encoded.max() <= 1
    torch.testing.assert_close(encoded * 255, (encoded * 255).round(), atol=1e-4, rtol=0)


def test_hha_of_a_room_seen_by_a_level_camera():
    depth, sees_floor = _floor_and_wall(camera_height=1.2, wall=5.0)
    floor_rows = sees_floor.nonzero()[:, 0]
    floor = slice(int(floor_rows[0]) + 4, None)  # away from the crease, beyond the 7x7 window
    wall = slice(0, int(floor_rows[0]) - 4)
    for gravity, tol in ((LEVEL, 0), (None, 2)):  # given exactly, or estimated
        disparity, height, angle = _bytes(hha(depth, K, gravity=gravity))
        assert (disparity[wall] == round(31000 / 500)).all()  # 62 at 5 m
        assert ((angle[floor] - 38).abs() <= tol).all()  # normal along gravity: 0 degrees
        assert ((angle[wall] - 128).abs() <= tol).all()  # fronto-parallel wall: 90 degrees
        assert (height[floor] <= tol + 1).all()  # the floor is the ground
        assert (height[: wall.stop].diff(dim=0) <= 0).all()  # the wall rises towards the top


def test_hha_estimates_gravity_for_a_tilted_camera():
    depth = _pitched_floor(pitch_deg=45.0)
    _, height, angle = _bytes(hha(depth, K))
    assert ((angle - 38).abs() <= 1).all() and (height <= 1).all()
    # assuming the camera level instead gets every normal 45 degrees off
    _, height, angle = _bytes(hha(depth, K, gravity=LEVEL))
    assert ((angle - 83).abs() <= 1).all() and height.max() > 50


def test_hha_disparity_is_monotone_in_inverse_depth():
    metres = torch.linspace(0.5, 12.0, 128, dtype=torch.float64).expand(96, 128)
    disparity = _bytes(hha(metres, K, gravity=LEVEL))[0]
    expected = torch.floor(31000 / (metres * 100).clamp(min=100) + 0.5).clamp(max=255).long()
    assert torch.equal(disparity, expected)
    assert (disparity.diff(dim=1) <= 0).all() and disparity[0, 0] == 255  # saturated, < 1.22 m
    assert disparity[0, -1] == round(31000 / 1200)


def test_hha_pixels_without_depth_are_zero():
    depth, _ = _floor_and_wall()
    depth[10:20, 30:40] = 0
    depth[50, 70] = math.nan
    encoded = hha(depth, K)
    assert (encoded[:, 10:20, 30:40] == 0).all() and (encoded[:, 50, 70] == 0).all()
    assert (encoded[:, 30, 90] > 0).all()
    assert (hha(torch.zeros(8, 8), K) == 0).all()


def test_hha_cropped_intrinsics_match_the_cropped_image():
    depth, _ = _floor_and_wall()
    full = _bytes(hha(depth, K, gravity=LEVEL))
    top, left = 20, 30
    crop = _bytes(hha(depth[top:, left:], K.crop(top=top, left=left), gravity=LEVEL))
    assert torch.equal(crop[0], full[0, top:, left:])  # disparity
    assert torch.equal(crop[2, 3:, 3:], full[2, top + 3 :, left + 3 :])  # normals, inside


def test_hha_arguments_and_nyud_intrinsics():
    assert NYUD_INTRINSICS.fx == pytest.approx(518.858, abs=1e-3)
    assert NYUD_INTRINSICS.cy == pytest.approx(253.736, abs=1e-3)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        hha(torch.ones(1, 8, 8), K)
    with pytest.raises(ValueError, match="gravity"):
        hha(torch.ones(8, 8), K, gravity=(0, 0, 0))

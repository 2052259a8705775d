"""PASCAL VOC / SBD loaders, the seg11valid split and joint transforms, offline on tiny fixtures."""

import errno
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader

from fcnlib.data import voc
from fcnlib.data.fake import write_fake_sbd, write_fake_voc, write_sbd_mat
from fcnlib.data.labels import save_label_png, voc_palette
from fcnlib.data.transforms import RandomShift

SIZE = (32, 48)


def _download_forbidden(*args, **kwargs):
    raise AssertionError(f"a download was attempted: {args} {kwargs}")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Every torchvision downloader the VOC and SBD classes can reach fails the test."""
    for module in (torchvision.datasets.voc, torchvision.datasets.sbd, torchvision.datasets.utils):
        for name in ("download_and_extract_archive", "download_url"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, _download_forbidden)


@pytest.fixture
def fake_voc(tmp_path):
    return write_fake_voc(tmp_path, n_train=3, n_val=2, size=SIZE, seed=1)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def test_fake_voc_is_in_voc_format(tmp_path, fake_voc):
    folder = tmp_path / "VOCdevkit" / "VOC2012"
    assert fake_voc.path == folder.resolve()
    name = fake_voc.splits["train"][0]
    png = Image.open(folder / "SegmentationClass" / f"{name}.png")
    assert png.mode == "P"
    palette = np.array(png.getpalette()).reshape(-1, 3)
    assert (palette[:256] == voc_palette().numpy()).all()
    assert (np.array(png) == fake_voc.labels[name]).all()
    assert Image.open(folder / "JPEGImages" / f"{name}.jpg").format == "JPEG"
    lines = (folder / "ImageSets" / "Segmentation" / "trainval.txt").read_text().split()
    assert lines == sorted(fake_voc.splits["train"] + fake_voc.splits["val"])


@pytest.mark.parametrize("split", ["train", "val", "trainval"])
def test_voc_items_match_the_fixture(tmp_path, fake_voc, split):
    ds = voc.VOCSegmentation(split, root=tmp_path)
    assert ds.ids == fake_voc.splits[split]
    assert len(ds) == len(fake_voc.splits[split])
    for (image, label), name in zip(ds, ds.ids, strict=True):
        assert image.shape == (3, *SIZE) and image.dtype == torch.float32
        assert label.shape == SIZE and label.dtype == torch.int64
        assert image.min() >= 0.0 and image.max() <= 1.0
        # palette PNG decoded to class indices, void kept as 255
        assert torch.equal(label, torch.from_numpy(fake_voc.labels[name]).long())
        assert (label == 255).any() and set(label.unique().tolist()) <= {*range(21), 255}
        written = torch.from_numpy(fake_voc.images[name]).permute(2, 0, 1) / 255
        assert (image - written).abs().mean() < 0.03  # JPEG is lossy, but only a little


def test_voc2011_uses_torchvision_layout(tmp_path):
    fake = write_fake_voc(tmp_path, year="2011", n_train=2, n_val=2, size=SIZE)
    assert fake.path == (tmp_path / "TrainVal" / "VOCdevkit" / "VOC2011").resolve()
    ds = voc.VOCSegmentation("val", year=2011, root=tmp_path)
    assert ds.ids == fake.splits["val"]
    _, label = ds[1]
    assert torch.equal(label, torch.from_numpy(fake.labels[ds.ids[1]]).long())


def test_sbd_labels_equal_what_was_written(tmp_path):
    fake = write_fake_sbd(tmp_path, n_train=3, n_val=2, size=SIZE, seed=2)
    mat = scipy.io.loadmat(fake.path / "cls" / f"{fake.splits['train'][0]}.mat")
    assert mat["GTcls"]["Segmentation"][0, 0].dtype == np.uint8
    for split in ("train", "val"):
        ds = voc.SBDSegmentation(split, root=tmp_path)
        assert ds.ids == fake.splits[split]
        for (image, label), name in zip(ds, ds.ids, strict=True):
            assert image.shape == (3, *SIZE) and image.dtype == torch.float32
            assert label.dtype == torch.int64
            assert torch.equal(label, torch.from_numpy(fake.labels[name]).long())
            assert not (label == 255).any()  # SBD has no void band
    # the fake .mat files also serve torchvision's "boundaries" mode
    _, edges = torchvision.datasets.SBDataset(fake.path, image_set="val", mode="boundaries")[0]
    assert edges.shape == (20, *SIZE) and edges.any()


def test_sbd_unpacked_by_hand_is_found(tmp_path):
    fake = write_fake_sbd(tmp_path / "elsewhere", n_train=2, n_val=1, size=SIZE)
    shutil.copytree(fake.path, tmp_path / "benchmark_RELEASE" / "dataset")
    assert (
        voc.dataset_dir("sbd", tmp_path) == (tmp_path / "benchmark_RELEASE" / "dataset").resolve()
    )
    assert voc.SBDSegmentation("train", root=tmp_path).ids == fake.splits["train"]


def test_id_filter_and_bad_arguments(tmp_path, fake_voc):
    keep = fake_voc.splits["train"][::2]
    ds = voc.VOCSegmentation("train", root=tmp_path, ids=reversed(keep))
    assert ds.ids == keep  # in the split's order
    with pytest.raises(ValueError, match="not in this split"):
        voc.VOCSegmentation("train", root=tmp_path, ids=["nope"])
    with pytest.raises(ValueError, match="split"):
        voc.VOCSegmentation("test", root=tmp_path)
    with pytest.raises(ValueError, match="year"):
        voc.VOCSegmentation("train", year=2007, root=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        voc.fetch("coco", tmp_path)
    with pytest.raises(TypeError, match=r"got the string '2012_000000': pass \['2012_000000'\]"):
        voc.VOCSegmentation("train", root=tmp_path, ids="2012_000000")  # not 11 one-letter ids
    with pytest.raises(ValueError, match="ids= is empty"):
        voc.VOCSegmentation("train", root=tmp_path, ids=[])  # not a DataLoader's num_samples=0


# --------------------------------------------------------------------------------------------
# A bad file is named: wrong label size, unknown class ids, truncated or corrupt files
# --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """The first training item of a fake VOC 2012 or SBD: its id, files and written label."""

    name: str
    image_file: Path
    label_file: Path
    label: np.ndarray
    load: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    write_label: Callable[[np.ndarray], None]


@pytest.fixture(params=["voc", "sbd"])
def sample(request, tmp_path):
    if request.param == "voc":
        fake = write_fake_voc(tmp_path, n_train=2, n_val=1, size=SIZE, seed=4)
        name = fake.splits["train"][0]
        label_file = fake.path / "SegmentationClass" / f"{name}.png"
        return Sample(
            name,
            fake.path / "JPEGImages" / f"{name}.jpg",
            label_file,
            fake.labels[name],
            lambda: voc.VOCSegmentation("train", root=tmp_path)[0],
            lambda label: save_label_png(torch.from_numpy(label), label_file),
        )
    fake = write_fake_sbd(tmp_path, n_train=2, n_val=1, size=SIZE, seed=4, void=True)
    name = fake.splits["train"][0]
    label_file = fake.path / "cls" / f"{name}.mat"
    return Sample(
        name,
        fake.path / "img" / f"{name}.jpg",
        label_file,
        fake.labels[name],
        lambda: voc.SBDSegmentation("train", root=tmp_path)[0],
        lambda label: write_sbd_mat(label_file, label),
    )


@pytest.mark.parametrize("class_id", [21, 30, 254])
def test_unknown_class_id_is_named_with_its_file(sample, class_id):
    label = sample.label.copy()
    label[3, 5] = class_id
    sample.write_label(label)
    with pytest.raises(ValueError, match=rf"class ids \[{class_id}\]") as info:
        sample.load()
    message = str(info.value)
    assert repr(sample.name) in message and str(sample.label_file) in message
    assert "0..20" in message and "255 (void)" in message and "ids=" in message


@pytest.mark.parametrize("crop", [(slice(0, -2), slice(None)), (slice(None), slice(1, None))])
def test_label_of_another_size_than_its_image_is_named(sample, crop):
    sample.write_label(np.ascontiguousarray(sample.label[crop]))
    with pytest.raises(ValueError, match=r"expected shape \(32, 48\)") as info:
        sample.load()
    message = str(info.value)
    assert repr(sample.name) in message
    assert str(sample.label_file) in message and str(sample.image_file) in message


def test_colour_label_png_is_named_as_such(tmp_path, fake_voc):
    name = fake_voc.splits["train"][0]
    path = fake_voc.path / "SegmentationClass" / f"{name}.png"
    Image.open(path).convert("RGB").save(path)  # as an image editor might save it
    with pytest.raises(ValueError, match=r"has shape \(32, 48, 3\).*It is a colour image"):
        voc.VOCSegmentation("train", root=tmp_path)[0]


def test_void_and_every_class_id_load(sample):
    label = np.tile(np.r_[0:21, 255].astype(np.uint8), (SIZE[0], 3))[:, : SIZE[1]]
    sample.write_label(label)
    assert torch.equal(sample.load()[1], torch.from_numpy(label).long())


def _fetch_command(name, root):
    return f"python -m fcnlib data fetch {name} --root {Path(root).resolve()}"


@pytest.mark.parametrize("which", ["image", "label"])
@pytest.mark.parametrize(
    ("damage", "state"),
    [("truncate", "truncated or corrupt"), ("garbage", "truncated or corrupt"),
     ("empty", r"empty \(0 bytes\)")],
)  # fmt: skip
def test_truncated_or_corrupt_file_is_named(sample, which, damage, state):
    path = sample.image_file if which == "image" else sample.label_file
    data = path.read_bytes()
    damaged = {"truncate": data[: len(data) // 2], "garbage": b"not an image" * 8, "empty": b""}
    path.write_bytes(damaged[damage])
    with pytest.raises(OSError, match=f"The file is damaged: {state}") as info:
        sample.load()
    message = str(info.value)
    assert str(path) in message and repr(sample.name) in message
    name = "sbd" if "sbd" in str(path) else "voc2012"
    assert _fetch_command(name, path.parents[3 if name == "voc2012" else 2]) in message
    assert info.value.__cause__ is not None  # the decoder's own error stays attached


@pytest.mark.parametrize("which", ["image", "label"])
def test_missing_file_is_named_as_missing_with_the_fetch_command(sample, which, tmp_path):
    path = sample.image_file if which == "image" else sample.label_file
    name = "sbd" if "sbd" in str(path) else "voc2012"
    ds = voc.SBDSegmentation("train", root=tmp_path) if name == "sbd" else (
        voc.VOCSegmentation("train", root=tmp_path))  # fmt: skip
    path.unlink()
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(path))} is missing") as info:
        ds[0]  # a file gone since the dataset was made
    assert repr(sample.name) in str(info.value) and "truncated" not in str(info.value)
    assert _fetch_command(name, tmp_path) in str(info.value)
    with pytest.raises(voc.DatasetNotFoundError, match="is incomplete") as info:
        voc.SBDSegmentation("train", root=tmp_path) if name == "sbd" else (
            voc.VOCSegmentation("train", root=tmp_path))  # fmt: skip
    assert f"missing: 1 of 4 (e.g. {path})" in str(info.value)
    assert _fetch_command(name, tmp_path) in str(info.value)
    others = [i for i in ds.ids if i != sample.name]  # leaving it out with ids= works
    kept = voc.SBDSegmentation("train", root=tmp_path, ids=others) if name == "sbd" else (
        voc.VOCSegmentation("train", root=tmp_path, ids=others))  # fmt: skip
    assert kept.ids == others


def test_sbd_label_without_its_struct_is_named(tmp_path):
    fake = write_fake_sbd(tmp_path, n_train=1, n_val=1, size=SIZE)
    name = fake.splits["train"][0]
    path = fake.path / "cls" / f"{name}.mat"
    scipy.io.savemat(path, {"Segmentation": fake.labels[name]})
    with pytest.raises(ValueError, match=r"has no variable 'GTcls' \(it holds \['Segmentation'\]"):
        voc.SBDSegmentation("train", root=tmp_path)[0]
    scipy.io.savemat(path, {"GTcls": {"Boundaries": fake.labels[name]}})
    with pytest.raises(ValueError, match="GTcls without a Segmentation field") as info:
        voc.SBDSegmentation("train", root=tmp_path)[0]
    assert str(path) in str(info.value) and repr(name) in str(info.value)


# --------------------------------------------------------------------------------------------
# seg11valid
# --------------------------------------------------------------------------------------------


def test_seg11valid_is_voc2011_val_minus_sbd_train(tmp_path):
    val = [f"2011_{i:06d}" for i in range(8)]
    in_sbd_train, in_sbd_val = val[1:4], [val[4], val[6]]
    fake = write_fake_voc(tmp_path, year="2011", ids_train=["2010_000001"], ids_val=val, size=SIZE)
    write_fake_sbd(
        tmp_path,
        ids_train=["2008_000001", *in_sbd_train],
        ids_val=["2008_000002", *in_sbd_val],
        size=SIZE,
    )
    expected = [val[0], val[4], val[5], val[6], val[7]]  # SBD val overlap is not removed
    assert voc.seg11valid_ids(tmp_path) == expected

    ds = voc.Seg11Valid(root=tmp_path)
    assert ds.ids == expected and len(ds) == len(expected)
    _, label = ds[2]
    assert torch.equal(label, torch.from_numpy(fake.labels[val[5]]).long())


def test_split_sizes_of_the_real_data_are_consistent():
    assert len(voc.VOC_CLASSES) == 21 and voc.VOC_CLASSES[0] == "background"
    sizes = voc.SPLIT_SIZES
    for name in ("voc2011", "voc2012"):
        assert sizes[name]["train"] + sizes[name]["val"] == sizes[name]["trainval"]
    assert sizes["seg11valid"]["val"] < sizes["voc2011"]["val"]


# --------------------------------------------------------------------------------------------
# Joint transforms
# --------------------------------------------------------------------------------------------


def _coordinate_pair(seed=0):
    """A label with void, and an image whose channels are (label code, column + 1, row + 1)."""
    g = torch.Generator().manual_seed(seed)
    h, w = SIZE
    label = torch.randint(0, 21, SIZE, generator=g, dtype=torch.uint8)
    label[torch.rand(SIZE, generator=g) < 0.1] = 255
    code = torch.where(label == 255, 250, label + 1)
    cols = torch.arange(1, w + 1).expand(h, w)
    rows = torch.arange(1, h + 1)[:, None].expand(h, w)
    return torch.stack([code, cols, rows]).to(torch.uint8), label


def test_mirror_and_crop_keep_every_pixel_aligned():
    image, label = _coordinate_pair()
    t = voc.train_transform(crop=40, scale=None)  # pads rows (32 < 40), crops columns
    flipped = 0
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out_label = t(image, label)
        assert out_image.shape == (3, 40, 40) and out_label.shape == (40, 40)
        px = (out_image * 255).round().long()
        pad = (px == 0).all(0)
        assert pad.sum() == 40 * 40 - 32 * 40
        assert (out_label[pad] == 255).all()
        # every other pixel carries the label of the input pixel it came from
        col, row = px[1][~pad] - 1, px[2][~pad] - 1
        assert torch.equal(out_label[~pad], label[row, col].long())
        rows_of_cols = px[1][~pad].view(32, 40)
        flipped += int(rows_of_cols[0, 0] > rows_of_cols[0, 1])
    assert 0 < flipped < 12  # both mirrored and unmirrored outcomes occurred


@pytest.mark.parametrize("compact", [False, True])
def test_shift_moves_image_and_label_together_and_pads_with_void(compact):
    image, label = _coordinate_pair()
    h, w = SIZE
    t = voc.train_transform(crop=None, scale=None, mirror=False, shift=5, compact=compact)
    offsets = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out_image, out_label = t(image, label)
        assert out_image.shape == (3, h, w) and out_label.shape == (h, w)  # the size stays
        px = out_image.long() if compact else (out_image * 255).round().long()
        pad = (px == 0).all(0)
        assert (out_label[pad] == 255).all()
        col, row = px[1][~pad] - 1, px[2][~pad] - 1
        assert torch.equal(out_label[~pad].long(), label[row, col].long())
        ys, xs = torch.nonzero(~pad, as_tuple=True)
        dy, dx = (ys - row).unique(), (xs - col).unique()
        assert len(dy) == len(dx) == 1  # one translation for the whole picture
        dy, dx = int(dy), int(dx)
        assert abs(dy) <= 5 and abs(dx) <= 5
        assert int(pad.sum()) == h * w - (h - abs(dy)) * (w - abs(dx))
        offsets.add((dy, dx))
    assert len(offsets) > 20  # many of the 11 x 11 offsets occurred
    assert {d > 0 for d, _ in offsets} == {d > 0 for _, d in offsets} == {True, False}
    with pytest.raises(ValueError, match="max_shift"):
        RandomShift(-1)


def _block_pair(seed=0, block=16, band=3):
    """Blocks of random classes with flat colours, separated by void bands `band` px each side."""
    g = torch.Generator().manual_seed(seed)
    h, w = 64, 96
    classes = torch.randint(0, 21, (h // block, w // block), generator=g, dtype=torch.uint8)
    label = classes.repeat_interleave(block, 0).repeat_interleave(block, 1)
    inside = torch.arange(block)
    core = (inside >= band) & (inside < block - band)
    core_2d = core.repeat(h // block)[:, None] & core.repeat(w // block)[None, :]
    colours = _class_colours()
    image = colours[label.long()].permute(2, 0, 1).contiguous()
    label[~core_2d] = 255
    return image, label


def _class_colours():
    g = torch.Generator().manual_seed(123)
    return torch.randint(20, 236, (21, 3), generator=g, dtype=torch.uint8)


def test_scale_jitter_keeps_image_and_label_aligned_off_void():
    image, label = _block_pair()
    colours = _class_colours().float() / 255
    t = voc.train_transform(crop=80, scale=(0.5, 2.0))
    sizes = set()
    for seed in range(10):
        torch.manual_seed(seed)
        out_image, out_label = t(image, label)
        assert out_image.shape == (3, 80, 80)
        valid = out_label != 255
        assert valid.any()
        expected = colours[out_label[valid]].T
        assert (out_image[:, valid] - expected).abs().max() <= 2 / 255
        pad = (out_image == 0).all(0)
        assert (out_label[pad] == 255).all()
        sizes.add(int((~pad).sum()))
    assert len(sizes) > 1  # the scale really varied


def test_void_is_never_interpolated_into_a_class():
    g = torch.Generator().manual_seed(0)
    label = torch.zeros(SIZE, dtype=torch.uint8)
    label[torch.rand(SIZE, generator=g) < 0.3] = 7
    label[torch.rand(SIZE, generator=g) < 0.3] = 255
    image = torch.rand(3, *SIZE, generator=g)
    t = voc.train_transform(crop=None, scale=(0.3, 2.5))
    for seed in range(10):
        torch.manual_seed(seed)
        _, out = t(image, label)
        assert set(out.unique().tolist()) <= {0, 7, 255}
        assert (out == 255).any()


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"crop": 0}, "crop must be"), ({"crop": -5}, "crop must be"), ({"crop": 2.5}, "crop must be"),
     ({"crop": (3, 4, 5)}, "crop must be"), ({"crop": True}, "crop must be"),
     ({"scale": 0.5}, r"scale must be \(low, high\).*got 0.5"),
     ({"scale": (2, 0.5)}, "scale must be")],
)  # fmt: skip
def test_bad_transform_options_are_refused_when_made(options, expected):
    with pytest.raises(ValueError, match=expected):
        voc.train_transform(**options)  # not at the first item, or (crop=2.5) silently 2


def test_transforms_are_deterministic_under_manual_seed():
    image, label = _block_pair(seed=3)
    t = voc.train_transform(crop=48, scale=(0.5, 2.0))
    torch.manual_seed(7)
    first = t(image, label)
    torch.manual_seed(7)
    again = t(image, label)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    torch.manual_seed(8)
    other = t(image, label)
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_eval_transform_only_converts(tmp_path, fake_voc):
    name = fake_voc.splits["val"][0]
    folder = fake_voc.path
    pil_image = Image.open(folder / "JPEGImages" / f"{name}.jpg")
    pil_label = Image.open(folder / "SegmentationClass" / f"{name}.png")
    image, label = voc.eval_transform()(pil_image, pil_label)
    ref_image, ref_label = voc.VOCSegmentation("val", root=tmp_path)[0]
    assert torch.equal(image, ref_image) and torch.equal(label, ref_label)


def test_dataset_with_train_transform_batches(tmp_path, fake_voc):
    ds = voc.VOCSegmentation("trainval", root=tmp_path, transforms=voc.train_transform(crop=40))
    torch.manual_seed(0)
    images, labels = next(iter(DataLoader(ds, batch_size=5)))
    assert images.shape == (5, 3, 40, 40) and images.dtype == torch.float32
    assert labels.shape == (5, 40, 40) and labels.dtype == torch.int64
    assert set(labels.unique().tolist()) <= {*range(21), 255}


# --------------------------------------------------------------------------------------------
# Missing data and downloads
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "name", "where"),
    [
        (lambda r: voc.VOCSegmentation("train", root=r), "voc2012", "VOCdevkit/VOC2012"),
        (lambda r: voc.VOCSegmentation("val", year="2011", root=r), "voc2011", "TrainVal"),
        (lambda r: voc.SBDSegmentation("train", root=r), "sbd", "sbd"),
        (lambda r: voc.Seg11Valid(root=r), "sbd", "sbd"),
    ],
)
def test_missing_data_error_says_what_where_and_how(tmp_path, make, name, where):
    root = tmp_path / "data"
    with pytest.raises(voc.DatasetNotFoundError) as info:
        make(root)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(root.resolve() / where) in message
    assert f"python -m fcnlib data fetch {name} --root {root.resolve()}" in message


@pytest.mark.parametrize("name", ["voc2012", "sbd"])
@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_split_list_is_refused_naming_the_file(tmp_path, name, content):
    if name == "sbd":
        split_file = write_fake_sbd(tmp_path, n_train=2, n_val=1, size=SIZE).path / "train.txt"
        make, ids = (lambda: voc.SBDSegmentation("train", root=tmp_path)), voc.sbd_ids
    else:
        fake = write_fake_voc(tmp_path, n_train=2, n_val=1, size=SIZE)
        split_file = fake.path / "ImageSets" / "Segmentation" / "train.txt"
        make, ids = (lambda: voc.VOCSegmentation("train", root=tmp_path)), voc.voc_ids
    split_file.write_text(content)
    for load in (make, lambda: ids("train", root=tmp_path)):
        with pytest.raises(ValueError, match=f"{re.escape(str(split_file))} lists no images") as e:
            load()
        assert _fetch_command(name, tmp_path) in str(e.value)


def test_missing_split_file_is_named(tmp_path, fake_voc):
    split_file = fake_voc.path / "ImageSets" / "Segmentation" / "val.txt"
    split_file.unlink()
    assert len(voc.VOCSegmentation("train", root=tmp_path)) == 3
    with pytest.raises(voc.DatasetNotFoundError, match=str(split_file)):
        voc.VOCSegmentation("val", root=tmp_path)


def test_default_root_is_fcn_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_DATA", str(tmp_path))
    with pytest.raises(voc.DatasetNotFoundError, match=f"--root {tmp_path.resolve()}"):
        voc.VOCSegmentation()
    write_fake_voc(tmp_path, n_train=1, n_val=1, size=SIZE)
    assert len(voc.VOCSegmentation()) == 1


def test_download_true_skips_data_already_there(tmp_path, fake_voc):
    write_fake_sbd(tmp_path, ids_train=["x"], ids_val=["y"], size=SIZE)
    write_fake_voc(tmp_path, year="2011", n_train=1, n_val=2, size=SIZE)
    # the autouse fixture fails the test if any downloader runs
    assert len(voc.VOCSegmentation("val", root=tmp_path, download=True)) == 2
    assert len(voc.SBDSegmentation("val", root=tmp_path, download=True)) == 1
    assert len(voc.Seg11Valid(root=tmp_path, download=True)) == 2
    assert voc.fetch("voc2012", tmp_path) == fake_voc.path


def test_fetch_uses_torchvision_download_with_md5(tmp_path, monkeypatch):
    calls = []

    def fake_voc_download(url, download_root, *args, **kwargs):
        calls.append((url, kwargs.get("md5")))
        write_fake_voc(download_root, n_train=2, n_val=1, size=SIZE)

    def fake_sbd_download(url, download_root, *args, **kwargs):
        calls.append((url, kwargs.get("md5")))
        unpacked = Path(download_root) / "benchmark_RELEASE" / "dataset"
        fake = write_fake_sbd(tmp_path / "scratch", n_train=2, n_val=1, size=SIZE)
        shutil.copytree(fake.path, unpacked)
        (unpacked / "inst").mkdir()

    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive", fake_voc_download)
    monkeypatch.setattr(torchvision.datasets.sbd, "download_and_extract_archive", fake_sbd_download)

    root = tmp_path / "data"
    assert len(voc.VOCSegmentation("val", root=root, download=True)) == 1
    assert voc.fetch("sbd", root) == (root / "sbd").resolve()
    assert len(voc.SBDSegmentation("train", root=root)) == 2
    year = torchvision.datasets.voc.DATASET_YEAR_DICT["2012"]
    sbd = torchvision.datasets.SBDataset
    assert calls == [(year["url"], year["md5"]), (sbd.url, sbd.md5)]


def _voc_download(calls, unpack=True):
    """A stand-in for torchvision's download of the VOC 2012 archive: it unpacks a fake VOC
    (the same as the ``half_unpacked`` one) or, with ``unpack=False``, nothing."""

    def download(url, download_root, *args, **kwargs):
        calls.append(url)
        if unpack:
            write_fake_voc(download_root, n_train=3, n_val=2, size=SIZE, seed=1)

    return download


@pytest.mark.parametrize("damage", ["images", "label", "empty list", "list"])
def test_fetch_unpacks_a_half_unpacked_voc_again(tmp_path, monkeypatch, fake_voc, damage):
    folder, ids = fake_voc.path, fake_voc.splits["trainval"]
    if damage == "images":
        for name in ids[:3]:
            (folder / "JPEGImages" / f"{name}.jpg").unlink()
    elif damage == "label":
        (folder / "SegmentationClass" / f"{ids[-1]}.png").unlink()
    else:
        split_file = folder / "ImageSets" / "Segmentation" / "val.txt"
        split_file.write_text("") if damage == "empty list" else split_file.unlink()
    calls = []
    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive",
                        _voc_download(calls))  # fmt: skip
    assert voc.fetch("voc2012", tmp_path) == folder
    assert len(calls) == 1  # it was not "done": it unpacked again
    ds = voc.VOCSegmentation("trainval", root=tmp_path)
    assert ds.ids == ids and all(label.shape == SIZE for _, label in ds)
    assert voc.fetch("voc2012", tmp_path) == folder and len(calls) == 1  # complete now


def test_fetch_says_what_is_still_missing_after_unpacking(tmp_path, monkeypatch, fake_voc):
    name = fake_voc.splits["val"][0]
    (fake_voc.path / "SegmentationClass" / f"{name}.png").unlink()
    calls = []
    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive",
                        _voc_download(calls, unpack=False))  # fmt: skip
    with pytest.raises(voc.DatasetNotFoundError) as info:
        voc.fetch("voc2012", tmp_path)
    message = str(info.value)
    assert f"missing: 1 of 10 (e.g. {fake_voc.path / 'SegmentationClass' / name}.png)" in message
    assert "free" in message and _fetch_command("voc2012", tmp_path) in message
    assert len(calls) == 1


def test_fetch_unpacks_a_half_unpacked_sbd_again(tmp_path, monkeypatch):
    fake = write_fake_sbd(tmp_path, n_train=2, n_val=1, size=SIZE)
    lost = fake.path / "img" / f"{fake.splits['val'][0]}.jpg"
    lost.unlink()
    (fake.path / "inst").mkdir()  # torchvision moves it out of the archive too
    calls = []

    def download(url, download_root, *args, **kwargs):  # the archive unpacks in full
        calls.append(url)
        unpacked = Path(download_root) / "benchmark_RELEASE" / "dataset"
        again = write_fake_sbd(tmp_path / "scratch", n_train=2, n_val=1, size=SIZE)
        shutil.copytree(again.path, unpacked, dirs_exist_ok=True)
        (unpacked / "inst").mkdir(exist_ok=True)

    monkeypatch.setattr(torchvision.datasets.sbd, "download_and_extract_archive", download)
    assert voc.fetch("sbd", tmp_path) == fake.path
    assert len(calls) == 1 and lost.is_file()
    assert [len(voc.SBDSegmentation(s, root=tmp_path)) for s in ("train", "val")] == [2, 1]


def test_fetch_into_a_root_that_cannot_be_written_names_it(tmp_path, monkeypatch, fake_voc):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    assert voc.fetch("voc2012", tmp_path) == fake_voc.path  # complete: nothing to write
    root = tmp_path / "read-only"
    with pytest.raises(PermissionError) as info:
        voc.fetch("sbd", root)
    message = str(info.value)
    assert f"cannot write the SBD download (about 1.4 GB) into {root}" in message
    assert "--root" in message and "$FCN_DATA" in message
    monkeypatch.undo()
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OSError, match=r"into .*a-file/data .*--root .*\$FCN_DATA"):
        voc.fetch("voc2011", tmp_path / "a-file" / "data")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_fetch_into_a_read_only_folder_names_it(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=rf"into {tmp_path} .*--root"):
            voc.fetch("voc2012", tmp_path)
    finally:
        tmp_path.chmod(0o755)


@pytest.mark.parametrize(
    ("error", "raised", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "x.tar"), OSError,
         r"No space left on device \(x.tar\)\. Free about 2 GB .*--root"),
        (URLError("Name or service not known"), OSError, "Check the internet connection"),
        (RuntimeError("File not found or corrupted."), RuntimeError, "not match its MD5 checksum"),
    ],
)  # fmt: skip
def test_a_failed_download_says_what_to_do(tmp_path, monkeypatch, error, raised, expected):
    def download(*args, **kwargs):
        raise error

    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive", download)
    with pytest.raises(raised, match=expected) as info:
        voc.fetch("voc2012", tmp_path)
    assert "--root" in str(info.value) and info.value.__cause__ is error


def test_paper_datasets_refuse_a_training_set_that_is_all_validation(tmp_path):
    shared = ["2011_000001", "2011_000002"]  # VOC 2011 train, and in seg11valid too
    write_fake_sbd(tmp_path, ids_train=["2008_000001"], ids_val=["2008_000002"], size=SIZE)
    write_fake_voc(tmp_path, year=2011, ids_train=shared, ids_val=[*shared, "2011_000003"],
                   size=SIZE)  # fmt: skip
    with pytest.raises(ValueError, match="none is left to train on"):
        voc.paper_datasets("voc2011", root=tmp_path)


# --------------------------------------------------------------------------------------------
# Scenes as content, and the paper's train/val pair
# --------------------------------------------------------------------------------------------


def test_scene_content_is_the_same_picture_for_an_id_in_voc_and_sbd(tmp_path):
    sbd = write_fake_sbd(tmp_path, n_train=3, n_val=1, size=SIZE, content="scenes")
    shared = sbd.splits["train"][1]
    val_ids = [shared, "2011_000002"]
    fake = write_fake_voc(tmp_path, year=2011, ids_train=["2011_000001"], ids_val=val_ids,
                              size=SIZE, content="scenes")  # fmt: skip
    assert (fake.images[shared] == sbd.images[shared]).all()
    on_voc, on_sbd = fake.labels[shared], sbd.labels[shared]
    assert ((on_voc == on_sbd) | (on_voc == 255)).all()  # VOC adds its void band, SBD has none
    assert (on_voc == 255).any() and not (on_sbd == 255).any()
    labels = np.concatenate([lab.ravel() for lab in sbd.labels.values()])
    assert set(np.unique(labels)) <= set(range(7))  # the lab classes
    assert len({im.tobytes() for im in sbd.images.values()}) == 4  # different ids, new scenes
    _, label = voc.SBDSegmentation("train", root=tmp_path)[1]
    assert (label.numpy() == on_sbd).all()
    with pytest.raises(ValueError, match="content"):
        write_fake_sbd(tmp_path, content="photos")


def test_paper_datasets_train_on_sbd_and_validate_on_seg11valid(tmp_path):
    sbd = write_fake_sbd(tmp_path, n_train=5, n_val=2, size=SIZE, content="scenes")
    val_ids = [sbd.splits["train"][0], "2011_000010", "2011_000011"]
    write_fake_voc(tmp_path, year=2011, ids_train=["2011_000001"], ids_val=val_ids,
                       size=SIZE, content="scenes")  # fmt: skip
    train, val = voc.paper_datasets(root=tmp_path, crop=40)
    assert train.ids == sbd.splits["train"] and val.ids == ["2011_000010", "2011_000011"]
    image, label = train[0]
    assert image.shape == (3, 40, 40) and label.shape == (40, 40)
    assert (label == 255).sum() >= (40 - SIZE[0]) * 40  # rows padded to 40 are void
    assert val[0][0].shape == (3, *SIZE)  # whole images, untouched
    # a VOC 2012 train split that contains a seg11valid image: left out of training, loudly
    write_fake_voc(tmp_path, year=2012, ids_train=["2011_000010", "2012_000001"],
                       ids_val=["2012_000002"], size=SIZE)  # fmt: skip
    with pytest.warns(UserWarning, match="1 of the 2 voc2012 training images"):
        train, _ = voc.paper_datasets("voc2012", root=tmp_path, crop=None)
    assert train.ids == ["2012_000001"]
    with pytest.raises(ValueError, match="train must be one of"):
        voc.paper_datasets("coco", root=tmp_path)


def test_paper_datasets_train_without_augmentation_unless_asked(tmp_path):
    # the paper tried mirroring and 32-pixel jittering, found no noticeable gain, and its final
    # nets train on the images as they are: so do paper_datasets' by default
    write_fake_sbd(tmp_path, n_train=4, n_val=1, size=SIZE, content="scenes", seed=1)
    write_fake_voc(tmp_path, year=2011, ids_train=["2011_000001"], ids_val=["2011_000010"],
                       size=SIZE, content="scenes")  # fmt: skip
    plain = voc.SBDSegmentation("train", root=tmp_path)
    train, _ = voc.paper_datasets(root=tmp_path, crop=None)
    assert "Flip" not in repr(train.transforms) and "Shift" not in repr(train.transforms)
    mirrored, _ = voc.paper_datasets(root=tmp_path, crop=None, mirror=True)
    shifted, _ = voc.paper_datasets(root=tmp_path, crop=None, shift=8)
    changed = {"mirror": 0, "shift": 0}
    for seed in range(10):
        for i in range(len(plain)):
            torch.manual_seed(seed)
            image, label = train[i]
            assert torch.equal(image, plain[i][0]) and torch.equal(label, plain[i][1])
            torch.manual_seed(seed)
            changed["mirror"] += not torch.equal(mirrored[i][1], plain[i][1])
            torch.manual_seed(seed)
            changed["shift"] += not torch.equal(shifted[i][1], plain[i][1])
    assert 0 < changed["mirror"] < 40 and changed["shift"] > 20  # the options still work


def test_seg11valid_without_either_dataset_names_both_downloads(tmp_path):
    with pytest.raises(voc.DatasetNotFoundError, match=r"(?s)fetch voc2011.*fetch sbd"):
        voc.Seg11Valid(root=tmp_path)


def _paper_pair(root, compact):
    write_fake_sbd(root, n_train=6, n_val=2, size=SIZE, content="scenes", seed=3)
    val_ids = ["2011_000010", "2011_000011"]
    write_fake_voc(root, year=2011, ids_train=["2011_000001"], ids_val=val_ids, size=SIZE,
                       content="scenes")  # fmt: skip
    return voc.paper_datasets(root=root, crop=40, compact=compact)


def test_compact_items_are_the_float_items_before_conversion(tmp_path):
    from fcnlib.train import batch_to

    train, val = _paper_pair(tmp_path, compact=True)
    train_f, val_f = _paper_pair(tmp_path, compact=False)
    assert "compact=True" in repr(train.transforms)
    for i in range(len(train)):
        torch.manual_seed(i)  # the same random crop and flip for both
        image, label = train[i]
        torch.manual_seed(i)
        image_f, label_f = train_f[i]
        assert image.dtype == label.dtype == torch.uint8 and image.shape == (3, 40, 40)
        x, y = batch_to(image[None], label[None], "cpu")
        assert torch.equal(x[0], image_f) and torch.equal(y[0], label_f)  # bit for bit
        assert y.dtype == torch.int64
    image, label = val[0]
    assert image.dtype == torch.uint8 and image.shape == (3, *SIZE)
    x, _ = batch_to(image[None], label[None], "cpu", channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x[0], val_f[0][0])


def test_fit_on_compact_items_trains_bit_for_bit_as_on_float_items(tmp_path):
    from fcnlib.models import fcn32s
    from fcnlib.train import evaluate, fit, recipe

    config = recipe("fast", epochs=1, batch_size=2, seed=0)
    runs = []
    for compact in (True, False):
        train, val = _paper_pair(tmp_path, compact=compact)
        torch.manual_seed(0)
        net = fcn32s("tiny_vgg", n_classes=21, pretrained=True)
        history = fit(net, train, val, config=config, n_classes=21, device="cpu",
                      progress=False)  # fmt: skip
        loader = DataLoader(val, batch_size=1)
        runs.append((history[-1], net.state_dict(), evaluate(net, loader, n_classes=21)))
    (h1, w1, s1), (h2, w2, s2) = runs
    assert h1["loss"] == h2["loss"] and h1["mean_iu"] == h2["mean_iu"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert s1.mean_iu == s2.mean_iu and s1.pixel_acc == s2.pixel_acc

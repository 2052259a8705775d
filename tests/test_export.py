"""fcnlib.export: the ONNX file computes what the net computes, at any size; the live pages'
scene bank holds what it says."""

import base64
import gzip
import hashlib
import io
import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image

from fcnlib import models
from fcnlib.data import CLASSES, ShapesDataset
from fcnlib.export import (
    BANK_FORMAT,
    INPUT_NAME,
    OUTPUT_NAME,
    browser_net,
    export_onnx,
    onnx_bytes,
    write_files_script,
    write_live_assets,
)
from fcnlib.models import fcn
from fcnlib.train import fit, recipe

STRIDES = (32, 16, 8)
# 128 x 128 as the chapters; 100 x 148 is divisible by no stride of the nets, so every skip's
# maps are cut to each other's size in the graph as in the net.
SIZES = [(128, 128), (100, 148)]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def nets() -> dict[int, models.FCN]:
    """FCN-32s/16s/8s as the chapters build them, trained for 2 short epochs (class-balanced
    loss: enough for labels of several classes; the score layers start at zero)."""
    train = ShapesDataset("train", size=64, length=64, seed=0).materialize()
    out = {}
    for stride in STRIDES:
        torch.manual_seed(stride)
        net = fcn("tiny_vgg", n_classes=len(CLASSES), stride=stride, pretrained=True)
        config = recipe("fast", epochs=2, class_weights="balanced")
        fit(net, train, config=config, n_classes=len(CLASSES), progress=False, tensorboard=False)
        out[stride] = net.eval()
    return out


@pytest.fixture(scope="module")
def files(nets, tmp_path_factory) -> dict[int, bytes]:
    folder = tmp_path_factory.mktemp("onnx")
    return {s: export_onnx(net, folder / f"fcn{s}s.onnx").read_bytes() for s, net in nets.items()}


def _session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def _disagreement(net: models.FCN, onnx_bytes: bytes, size: tuple[int, int]) -> tuple:
    """(max |logit difference|, pixels whose label differs, the net's labels) on 8 val scenes."""
    images, _ = ShapesDataset("val", size=size, length=8, seed=3).materialize()
    with torch.no_grad():
        expected = net(images).numpy()
    got = _session(onnx_bytes).run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
    assert got.shape == expected.shape == (8, len(CLASSES), *size)
    differ = int((got.argmax(1) != expected.argmax(1)).sum())
    return float(np.abs(got - expected).max()), differ, expected.argmax(1)


@pytest.mark.slow  # the three short trainings: about 6 s on 2 CPU cores
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("stride", STRIDES)
def test_onnxruntime_gives_the_nets_logits_and_labels(nets, files, stride, size):
    diff, differ, labels = _disagreement(nets[stride], files[stride], size)
    assert diff <= TOLERANCE
    assert differ == 0
    assert len(np.unique(labels)) >= 3  # trained: labels are not one class everywhere


def _perturbed(onnx_bytes: bytes, amount: float) -> bytes:
    """The file with ``amount`` added to one class's score bias."""
    model = onnx.load_from_string(onnx_bytes)
    bias = next(t for t in model.graph.initializer if t.name == "score_fr.bias")
    values = numpy_helper.to_array(bias).copy()
    values[1] += amount
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    return model.SerializeToString()


@pytest.mark.slow
def test_the_comparison_sees_a_perturbed_model(nets, files):
    diff, differ, _ = _disagreement(nets[32], _perturbed(files[32], 1e-3), SIZES[1])
    assert diff > TOLERANCE  # a small change is seen in the logits
    diff, differ, _ = _disagreement(nets[32], _perturbed(files[32], 5.0), SIZES[1])
    assert differ > 0  # a large one in the labels


def test_the_file_takes_any_size_and_batch(tmp_path, scored_lab_net):
    net = scored_lab_net(8)
    session = _session(export_onnx(net, tmp_path / "fcn8s.onnx").read_bytes())
    for n, h, w in [(1, 1, 1), (3, 33, 65), (2, 250, 31)]:
        x = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            expected = net(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


def _min_fuse(up, skip, offset):
    """Skip fusion that cuts to ``min`` of the sizes: right in PyTorch, and a trace keeps the
    number it had at the traced size."""
    skip = skip[..., offset:, offset:] if offset >= 0 else F.pad(skip, (-offset, 0, -offset, 0))
    h, w = min(up.shape[-2], skip.shape[-2]), min(up.shape[-1], skip.shape[-1])
    return up[..., :h, :w] + skip[..., :h, :w]


def test_a_graph_fixed_at_the_traced_size_is_refused(tmp_path, monkeypatch, scored_lab_net):
    monkeypatch.setattr(models, "_fuse", _min_fuse)
    path = tmp_path / "fcn8s.onnx"
    path.write_bytes(b"before")
    with pytest.raises(RuntimeError, match=r"37 x 50.*no file was written"):
        export_onnx(scored_lab_net(8), path)
    assert path.read_bytes() == b"before"


def test_export_keeps_the_nets_modes_and_refuses_other_precisions(tmp_path):
    net = fcn("tiny_vgg", n_classes=3, stride=16)
    net.train()
    export_onnx(net, tmp_path / "a" / "net.onnx")
    assert net.training and all(m.training for m in net.modules())
    with pytest.raises(ValueError, match=r"float32.*torch\.float64.*model\.float\(\)"):
        export_onnx(net.double(), tmp_path / "b.onnx")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(net.float(), tmp_path / "c.onnx", opset=True)
    assert not (tmp_path / "b.onnx").exists()


def _scripted(path) -> dict[str, bytes]:
    """The files a script of write_files_script holds, decoded as the page decodes them."""
    found = re.findall(r'^self\.fcnLiveFiles\["([^"]+)"\] = "([^"]*)";$', path.read_text(), re.M)
    return {name: gzip.decompress(base64.b64decode(packed)) for name, packed in found}


@pytest.fixture(scope="module")
def bank(tmp_path_factory, scored_lab_net):
    nets = {"FCN-32s": scored_lab_net(32), "FCN-8s": scored_lab_net(8)}
    folder = tmp_path_factory.mktemp("live")
    return folder, write_live_assets(folder, nets, scenes=3, seed=5, size=64), nets


def test_the_bank_lists_its_files_and_the_labs_colours(bank):
    folder, manifest, _ = bank
    data = json.loads(manifest.read_text())
    assert data["format"] == BANK_FORMAT and data["classes"] == list(CLASSES)
    assert data["colors"][:2] == [[0, 0, 0], [128, 0, 0]]  # VOC's, as the figures show them
    assert data["void"] == {"id": 255, "color": [224, 224, 192]}
    assert [n["name"] for n in data["nets"]] == ["FCN-32s", "FCN-8s"]
    assert [n["stride"] for n in data["nets"]] == [32, 8]
    assert data["nets"][0]["outputs"] == [OUTPUT_NAME, "score_fr"]
    assert data["nets"][1]["outputs"][-3:] == ["upscore_pool4", "score_pool3", "fuse_pool3"]
    assert len(data["scenes"]) == 3
    scene = data["scenes"][2]
    listed = [scene["image"], scene["truth"], *scene["labels"].values()]
    assert listed == [f"scenes/002.{s}png" for s in ("", "truth.", "FCN-32s.", "FCN-8s.")]
    files = _scripted(folder / "bank.js")
    assert all(file in files for file in listed)
    for net in data["nets"]:
        (model,) = _scripted(folder / net["script"]).values()
        assert net["sha256"] == hashlib.sha256(model).hexdigest() and net["bytes"] == len(model)
        assert 0.99 <= net["agreement_with_float32"] <= 1
    assert (folder / "fallback.png").is_file()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["bank.js", "bank.json", "fallback.png", "FCN-32s.onnx.js", "FCN-8s.onnx.js"]
        + data["files"]
    )
    assert data["files"] == [
        "fusion-fallback.png", "fields.js", "fields-fallback.png", "upsampling.js",
        "upsampling-fallback.png",
    ]  # fmt: skip


def test_the_bank_script_holds_bank_json_and_every_png(bank):
    folder, manifest, _ = bank
    files = _scripted(folder / "bank.js")
    assert files.pop("bank.json") == manifest.read_bytes().rstrip(b"\n")
    assert len(files) == 3 * 4 and all(data[:8] == b"\x89PNG\r\n\x1a\n" for data in files.values())


def test_the_banks_labels_are_the_browser_nets_on_the_8_bit_scenes(bank):
    folder, manifest, nets = bank
    data = json.loads(manifest.read_text())
    files = _scripted(folder / "bank.js")
    png = lambda name: np.array(Image.open(io.BytesIO(files[name])))  # noqa: E731
    truth = ShapesDataset("test", size=64, length=3, seed=5).materialize()[1]
    for k, scene in enumerate(data["scenes"]):
        image = torch.from_numpy(png(scene["image"])).permute(2, 0, 1).float().div(255)
        assert np.array_equal(png(scene["truth"]), truth[k].numpy())
        for name, file in scene["labels"].items():
            with torch.no_grad():
                expected = browser_net(nets[name])(image[None]).argmax(1)[0].numpy()
            assert np.array_equal(png(file), expected)


def test_the_browser_copy_is_the_net_with_float16_weights(scored_lab_net, tmp_path):
    net = scored_lab_net(8)
    copy = browser_net(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy.modules())
    for t in copy.parameters():
        assert torch.equal(t, t.half().float())
    x = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        near = (copy(x) - net(x)).abs().max()
    assert 0 < near < 0.05  # rounded, not changed
    # float16 weights: half the bytes, the copy's logits and every stage's scores within 1e-4
    half = onnx_bytes(copy, stages=True, half=True)
    assert len(half) < 0.55 * len(onnx_bytes(copy))
    session = _session(half)
    names = [o.name for o in session.get_outputs()]
    assert names == [OUTPUT_NAME, *copy.fusion_stages()]
    got = dict(zip(names, session.run(names, {INPUT_NAME: x.numpy()}), strict=True))
    with torch.no_grad():
        maps = copy.score_maps(x)
    maps[OUTPUT_NAME] = maps["score"]
    for name in names:
        np.testing.assert_allclose(got[name], maps[name].numpy(), atol=TOLERANCE, rtol=0)
    with pytest.raises(ValueError, match=r"not exactly a float16.*browser_net"):
        onnx_bytes(net, half=True)  # the net itself: weights not rounded


def test_bank_and_script_names_are_checked(tmp_path, scored_lab_net):
    with pytest.raises(ValueError, match="at least one net"):
        write_live_assets(tmp_path, {})
    with pytest.raises(ValueError, match="names its files"):
        write_live_assets(tmp_path, {"FCN 8s": scored_lab_net(8)})
    with pytest.raises(ValueError, match=r"RGB, 7 classes.*takes 3 channels and scores 4"):
        write_live_assets(tmp_path, {"FCN-8s": fcn("tiny_vgg", n_classes=4, stride=8)})
    with pytest.raises(ValueError, match="not a file name"):
        write_files_script(tmp_path / "x.js", {"../x.onnx": b""})
    assert not list(tmp_path.iterdir())

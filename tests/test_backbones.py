"""Backbones: builders, trunk taps, the shipped lab-bench weights and the cached pre-training."""

from dataclasses import asdict
from functools import partial
from pathlib import Path

import pytest
import torch

from fcnlib import backbones, pretrain
from fcnlib.backbones import (
    BACKBONES,
    build_classifier,
    pretrained_classifier,
    stage_taps,
    trunk_layers,
)
from fcnlib.pretrain import PretrainRecipe

TINY = PretrainRecipe(n_train=64, n_val=32, epochs=1, batch_size=32)
REGENERATE = (
    'regenerate it: python -c "from fcnlib.pretrain import _write_shipped_weights as w; w()" '
    "(bump PretrainRecipe.version when the data generator or the architecture changed)"
)


def _no_training(*args, **kwargs):
    raise AssertionError("the shipped weights must be loaded, not trained")


def test_taps_are_the_pools():
    with torch.device("meta"):  # geometry only: no weights in memory
        vgg = trunk_layers(build_classifier("vgg16"))
    taps = stage_taps(vgg)
    assert taps == {2: 4, 4: 9, 8: 16, 16: 23, 32: 30}  # pool1 .. pool5 of torchvision's VGG16
    assert all(isinstance(vgg[i], torch.nn.MaxPool2d) for i in taps.values())
    tiny = trunk_layers(build_classifier("tiny_vgg"))
    assert all(isinstance(tiny[i], torch.nn.MaxPool2d) for i in stage_taps(tiny).values())
    assert max(stage_taps(tiny)) == 32


def test_googlenet_trunk_runs_to_inception5b():
    with torch.device("meta"):  # geometry only: shapes, no weights in memory
        net = build_classifier("googlenet").eval()
        trunk = trunk_layers(net)
        assert stage_taps(trunk, spec=BACKBONES["googlenet"]) == {8: 6, 16: 12, 32: 15}
        assert trunk(torch.zeros(1, 3, 224, 224)).shape == (1, 1024, 7, 7)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_classifier("resnet18")


def test_pretraining_is_cached_and_reused(tmp_path, monkeypatch):
    net = pretrained_classifier("tiny_vgg", cache=tmp_path, recipe=TINY, progress=False)
    files = list(tmp_path.glob("tiny_vgg-*.pt"))
    assert len(files) == 1 and 0.0 <= net.val_accuracy <= 1.0
    assert not list(tmp_path.glob("*.tmp"))  # written atomically

    def no_training(*args, **kwargs):
        raise AssertionError("a valid cache entry must be loaded, not retrained")

    monkeypatch.setattr(pretrain, "_train_lab_classifier", no_training)
    again = pretrained_classifier("tiny_vgg", cache=tmp_path, recipe=TINY, progress=False)
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert again.val_accuracy == net.val_accuracy


def test_an_unwritable_cache_is_refused_before_training(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(pretrain, "_train_lab_classifier", _no_training)
    with pytest.raises(PermissionError, match=r"cannot write .* set FCN_CACHE"):
        pretrained_classifier("tiny_vgg", cache=tmp_path / "file" / "sub", recipe=TINY)
    monkeypatch.setenv("FCN_CACHE", str(tmp_path / "file"))
    with pytest.raises(PermissionError, match=r"cache folder .*file/backbones"):
        pretrained_classifier("tiny_vgg_wide", progress=False)


def test_pretraining_is_deterministic():  # on the CPU, also where CUDA is present
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    a = pretrained_classifier("tiny_vgg", cache=False, recipe=TINY, progress=False)
    b = pretrained_classifier("tiny_vgg", cache=False, recipe=TINY, progress=False)
    assert next(a.parameters()).device.type == "cpu"
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    # the caller's random numbers and thread count are left alone
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_weights_do_not_depend_on_the_device():
    for kw in ({"cache": False, "recipe": TINY}, {}):  # trained here, and the shipped ones
        cpu = pretrained_classifier("tiny_vgg", progress=False, **kw)
        gpu = pretrained_classifier("tiny_vgg", progress=False, device="cuda", **kw)
        assert next(gpu.parameters()).is_cuda and gpu.val_accuracy == cpu.val_accuracy
        for (key, x), y in zip(cpu.state_dict().items(), gpu.state_dict().values(), strict=True):
            assert torch.equal(x, y.cpu()), key


def test_shipped_weights_are_the_default_recipes():
    files = sorted(pretrain._WEIGHTS_DIR.glob("tiny_vgg-*.pt"))
    assert len(files) == 1, f"expected one shipped tiny_vgg weights file, found {files}; " + (
        REGENERATE
    )
    blob = torch.load(files[0], map_location="cpu", weights_only=True)
    key = pretrain._recipe_key("tiny_vgg", PretrainRecipe())
    assert blob["key"] == key and files[0] == pretrain._shipped_path("tiny_vgg"), (
        f"{files[0].name} was made by another recipe or architecture than the default one "
        f"(key {key}); " + REGENERATE
    )
    assert blob["name"] == "tiny_vgg" and blob["recipe"] == asdict(PretrainRecipe())
    assert pretrain._state_digest(blob["state_dict"]) == blob["digest"]
    build_classifier("tiny_vgg").load_state_dict(blob["state_dict"])  # strict: same layers
    assert blob["val_accuracy"] > 0.9


def test_default_backbone_is_loaded_not_trained(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "_train_lab_classifier", _no_training)
    monkeypatch.setenv("FCN_CACHE", str(tmp_path))
    a = pretrained_classifier("tiny_vgg", progress=False)
    b = build_classifier("tiny_vgg", pretrained=True, progress=False)
    assert a is not b and not a.training and not b.training
    assert a.val_accuracy == b.val_accuracy > 0.9
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    blob = torch.load(pretrain._shipped_path("tiny_vgg"), weights_only=True)
    assert pretrain._state_digest(a.state_dict()) == blob["digest"]
    assert not list(tmp_path.iterdir())  # nothing cached


def test_retrain_runs_the_recipe_and_leaves_the_shipped_file_alone(tmp_path, monkeypatch):
    calls = []

    def fake_training(name, recipe, *, progress):
        calls.append(recipe)
        return build_classifier(name), 0.5

    monkeypatch.setattr(pretrain, "_train_lab_classifier", fake_training)
    shipped = pretrain._shipped_path("tiny_vgg")
    before = shipped.read_bytes()
    for _ in range(2):  # the second call loads the cache entry of the first
        net = pretrained_classifier("tiny_vgg", cache=tmp_path, retrain=True, progress=False)
        assert net.val_accuracy == 0.5 and not net.training
    assert calls == [PretrainRecipe()]
    assert [p.name for p in tmp_path.glob("*.pt")] == [shipped.name]
    assert shipped.read_bytes() == before


@pytest.mark.parametrize("damage", ["missing", "truncate", "tamper", "stale"])
def test_damaged_shipped_weights_are_an_error_not_retrained(tmp_path, monkeypatch, damage):
    shipped = pretrain._shipped_path("tiny_vgg")
    monkeypatch.setattr(pretrain, "_WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(pretrain, "_train_lab_classifier", _no_training)
    copy = tmp_path / shipped.name
    good = torch.load(shipped, weights_only=True)
    if damage == "truncate":
        copy.write_bytes(shipped.read_bytes()[:1000])
    elif damage == "tamper":  # a flipped weight: the checksum no longer matches
        state = {k: v.clone() for k, v in good["state_dict"].items()}
        state["features.0.weight"][0, 0, 0, 0] += 1.0
        torch.save({**good, "state_dict": state}, copy)
    elif damage == "stale":
        torch.save({**good, "key": "0" * 12}, copy)
    with pytest.raises(RuntimeError, match="damaged") as err:
        pretrained_classifier("tiny_vgg", progress=False)
    message = str(err.value)
    assert str(copy) in message and "retrain=True" in message and "reinstall" in message.lower()
    if damage == "tamper":
        assert "checksum" in message


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper", "stale"])
def test_damaged_or_stale_cache_is_rebuilt_not_loaded(tmp_path, damage):  # non-default recipes
    pretrained_classifier("tiny_vgg", cache=tmp_path, recipe=TINY, progress=False)
    (path,) = tmp_path.glob("tiny_vgg-*.pt")
    good = torch.load(path, weights_only=True)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif damage == "tamper":  # a flipped weight: the checksum no longer matches
        blob = dict(good)
        blob["state_dict"] = {k: v.clone() for k, v in good["state_dict"].items()}
        blob["state_dict"]["features.0.weight"][0, 0, 0, 0] += 1.0
        torch.save(blob, path)
    else:  # made by another recipe
        torch.save({**good, "key": "0" * 12}, path)
    with pytest.warns(UserWarning, match="unusable"):
        net = pretrained_classifier("tiny_vgg", cache=tmp_path, recipe=TINY, progress=False)
    torch.testing.assert_close(
        net.state_dict()["features.0.weight"], good["state_dict"]["features.0.weight"]
    )
    # and the rebuilt entry is valid again
    assert torch.load(path, weights_only=True)["digest"] == good["digest"]


def test_an_error_that_is_not_the_files_is_raised_not_answered_by_retraining(tmp_path, monkeypatch):
    pretrained_classifier("tiny_vgg", cache=tmp_path, recipe=TINY, progress=False)

    def broken(**kwargs):  # a bug in the code that rebuilds the net, not in the file
        raise TypeError("TinyVGG() got an unexpected keyword argument")

    monkeypatch.setattr(pretrain, "TinyVGG", broken)
    monkeypatch.setattr(pretrain, "_train_lab_classifier", _no_training)
    with pytest.raises(TypeError, match="unexpected keyword"):
        pretrained_classifier("tiny_vgg", cache=tmp_path, recipe=TINY, progress=False)


def test_a_file_of_another_kind_or_architecture_is_unusable_with_the_reason(tmp_path):
    path = tmp_path / "w.pt"
    key = pretrain._recipe_key("tiny_vgg", TINY)
    torch.save([1, 2, 3], path)
    assert pretrain._read_weights(path, "tiny_vgg", key)[1].startswith("it is not a weights")
    state = {"features.0.weight": torch.zeros(2, 3, 3, 3)}
    blob = {"key": key, "digest": pretrain._state_digest(state), "state_dict": state}
    torch.save({**blob, "val_accuracy": 0.5}, path)
    net, problem = pretrain._read_weights(path, "tiny_vgg", key)
    assert net is None and "do not fit tiny_vgg's architecture" in problem


# ---------------------------------------------------------------------------- Caffe VGG16


def _vgg16_shapes() -> dict[str, torch.Size]:
    import torchvision.models as tvm

    with torch.device("meta"):  # shapes only: no 0.5 GB of weights
        return {k: v.shape for k, v in tvm.vgg16().state_dict().items()}


def _jcjohnson_state() -> dict[str, torch.Tensor]:
    """A fake vgg16-00b39a1b.pth: VGG16's shapes under jcjohnson/pytorch-vgg's names (fc6 / fc7
    at classifier.1 / classifier.4). Weights are random per output unit and expanded over the
    rest (stride 0), so that the file stays a few kilobytes instead of 0.5 GB."""
    g = torch.Generator().manual_seed(0)
    old = {"classifier.0.": "classifier.1.", "classifier.3.": "classifier.4."}
    state = {}
    for key, shape in _vgg16_shapes().items():
        unit = torch.randn(shape[0], *[1] * (len(shape) - 1), generator=g)
        name = next((to + key[len(fr) :] for fr, to in old.items() if key.startswith(fr)), key)
        state[name] = unit.expand(shape)
    return state


def test_vgg16_caffe_spec_is_caffes_preprocessing():
    spec = BACKBONES["vgg16_caffe"]
    assert spec.bgr and spec.native_size == 224 and not spec.lab
    x = torch.rand(2, 3, 5, 4)  # RGB in [0, 1]
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    caffe = 255 * x[:, [2, 1, 0]] - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    torch.testing.assert_close((x[:, [2, 1, 0]] - mean) / std, caffe)
    # The other backbones keep RGB.
    assert not any(s.bgr for n, s in BACKBONES.items() if n != "vgg16_caffe")


def test_vgg16_caffe_loads_jcjohnsons_file_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = _jcjohnson_state()
    assert "classifier.1.weight" in state and "classifier.0.weight" not in state
    path = tmp_path / "hub" / "checkpoints" / "vgg16-00b39a1b.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path, _use_new_zipfile_serialization=False)  # as the 2017 file was
    assert path.stat().st_size < 1_000_000

    def no_download(*args, **kwargs):
        raise AssertionError("a file in the hub cache must be used, not downloaded")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    _pretend_digest(monkeypatch, path, "00b39a1b")  # the real file's; this one is a few kB
    net = build_classifier("vgg16_caffe", pretrained=True, progress=False)
    assert type(net).__name__ == "VGG"
    for ours, theirs in [
        (net.features[0].weight, "features.0.weight"),
        (net.features[28].bias, "features.28.bias"),
        (net.classifier[0].weight, "classifier.1.weight"),  # fc6
        (net.classifier[0].bias, "classifier.1.bias"),
        (net.classifier[3].weight, "classifier.4.weight"),  # fc7
        (net.classifier[6].weight, "classifier.6.weight"),  # fc8
        (net.classifier[6].bias, "classifier.6.bias"),
    ]:
        torch.testing.assert_close(ours.detach(), state[theirs], rtol=0, atol=0)


def test_vgg16_caffe_key_mapping_accepts_both_layouts():
    t = {k: torch.zeros(1) for k in ("features.0.weight", "classifier.6.bias")}
    old = {**t, "classifier.1.weight": torch.ones(1), "classifier.4.bias": torch.ones(2)}
    new = backbones._torchvision_vgg_keys(old)
    assert set(new) == {*t, "classifier.0.weight", "classifier.3.bias"}
    assert new["classifier.3.bias"] is old["classifier.4.bias"]
    tv = {**t, "classifier.0.weight": torch.ones(1), "classifier.3.bias": torch.ones(2)}
    assert backbones._torchvision_vgg_keys(tv) == tv  # torchvision's names: unchanged
    with pytest.raises(RuntimeError, match="mixes"):
        backbones._torchvision_vgg_keys({**old, "classifier.0.weight": torch.ones(1)})


def test_vgg16_caffe_offline_is_a_clear_error(tmp_path, monkeypatch):
    from urllib.error import URLError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    tried = []

    def offline(url, *args, **kwargs):
        tried.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    path = tmp_path / "hub" / "checkpoints" / "vgg16-00b39a1b.pth"
    # pretrained_classifier delegates non-lab backbones to build_classifier
    for load in (partial(build_classifier, pretrained=True), pretrained_classifier):
        tried.clear()
        with pytest.raises(RuntimeError, match="could not download") as err:
            load("vgg16_caffe", progress=False)
        message = str(err.value)
        assert tried == list(backbones._CAFFE_VGG16_URLS)  # the main address, then the mirror
        assert all(url in message for url in tried)
        assert str(path) in message and "pretrained=False" in message
    assert isinstance(build_classifier("vgg16_caffe"), torch.nn.Module)  # offline: random


def test_vgg16_caffe_damaged_cache_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "hub" / "checkpoints" / "vgg16-00b39a1b.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a state dict")
    with pytest.raises(RuntimeError, match="not the file their name promises") as err:
        build_classifier("vgg16_caffe", pretrained=True, progress=False)
    assert str(path) in str(err.value) and "Delete it" in str(err.value)
    _pretend_digest(monkeypatch, path, "00b39a1b")  # right digest, yet not a torch file
    with pytest.raises(RuntimeError, match="could not read") as err:
        build_classifier("vgg16_caffe", pretrained=True, progress=False)
    assert str(path) in str(err.value) and "Delete it" in str(err.value)


def _pretend_digest(monkeypatch, path, digest):
    """Make ``path``'s SHA-256 seem to start with ``digest`` (a small stand-in for a big file)."""
    real = backbones._sha256
    monkeypatch.setattr(backbones, "_sha256", lambda p: digest + "0" * 56 if p == path else real(p))


class _Payload:
    """Unpickling this creates ``marker``: the proof that a file ran code when it was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _planted(path, marker):
    """A VGG16 state dict (torchvision's names, tiny expanded tensors) carrying a payload."""
    state = {k: torch.zeros(1).expand(shape) for k, shape in _vgg16_shapes().items()}
    state["features.0.weight"] = {"tensor": state["features.0.weight"], "x": _Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_a_planted_file_in_torchvisions_cache_never_runs(tmp_path, monkeypatch):
    # torchvision checks a file's digest on download only, then unpickles whatever the cache
    # holds: a state dict carrying a payload ran it. fcnlib checks the digest on every use...
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    path = tmp_path / "home" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    marker = tmp_path / "ran"
    _planted(path, marker)
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    with pytest.raises(RuntimeError, match="not the file their name promises") as err:
        build_classifier("vgg16", pretrained=True, progress=False)
    assert str(path) in str(err.value)
    assert not marker.exists()
    # ... and reads it with weights_only=True: even a file whose digest matched its name
    # (a collision on the name's 8 hex digits) is refused without running its code.
    _pretend_digest(monkeypatch, path, "397923af")
    with pytest.raises(RuntimeError, match="could not read the ImageNet weights of vgg16"):
        build_classifier("vgg16", pretrained=True, progress=False)
    assert not marker.exists()
    # the planted file, unpickled as torchvision would, does run (the test would notice)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_imagenet_weights_come_from_the_cache_checked(tmp_path, monkeypatch):
    import hashlib

    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    saved = tvm.googlenet(aux_logits=True, init_weights=False).state_dict()
    path = tmp_path / "hub" / "checkpoints" / "googlenet-1378be20.pth"
    path.parent.mkdir(parents=True)
    torch.save(saved, path)
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)
    _pretend_digest(monkeypatch, path, "1378be20")
    net = build_classifier("googlenet", pretrained=True, progress=False)
    assert net.transform_input and net.aux1 is None and not net.aux_logits
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    # a download lands in the cache only if its digest matches the name (torch checks it)
    monkeypatch.undo()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh"))
    blob = tmp_path / "blob.pth"
    torch.save({"w": torch.arange(3.0)}, blob)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()[:8]

    def download(url, dst, hash_prefix=None, progress=True):
        assert hash_prefix == digest
        (tmp_path / "fresh").mkdir(exist_ok=True)
        Path(dst).write_bytes(blob.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    url = f"https://example.invalid/weights-{digest}.pth"
    state = backbones.hub_state_dict((url,), progress=False, what="test weights")
    torch.testing.assert_close(state["w"], torch.arange(3.0))
    assert (tmp_path / "fresh" / "hub" / "checkpoints" / f"weights-{digest}.pth").is_file()

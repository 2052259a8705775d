"""Backbones: builders, trunk taps, and the cached lab-bench pre-training."""

import pytest
import torch

from fcnlib import backbones
from fcnlib.backbones import (
    BACKBONES,
    _PretrainRecipe,
    build_classifier,
    pretrained_classifier,
    stage_taps,
    trunk_layers,
)

TINY = _PretrainRecipe(n_train=64, n_val=32, epochs=1, batch_size=32)


def test_taps_are_the_pools():
    vgg = trunk_layers(build_classifier("vgg16"))
    taps = stage_taps(vgg)
    assert taps == {2: 4, 4: 9, 8: 16, 16: 23, 32: 30}  # pool1 .. pool5 of torchvision's VGG16
    assert all(isinstance(vgg[i], torch.nn.MaxPool2d) for i in taps.values())
    tiny = trunk_layers(build_classifier("tiny_vgg"))
    assert all(isinstance(tiny[i], torch.nn.MaxPool2d) for i in stage_taps(tiny).values())
    assert max(stage_taps(tiny)) == 32


def test_googlenet_trunk_runs_to_inception5b():
    net = build_classifier("googlenet").eval()
    trunk = trunk_layers(net)
    assert stage_taps(trunk, spec=BACKBONES["googlenet"]) == {8: 6, 16: 12, 32: 15}
    with torch.no_grad():
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

    monkeypatch.setattr(backbones, "_train_lab_classifier", no_training)
    again = pretrained_classifier("tiny_vgg", cache=tmp_path, recipe=TINY, progress=False)
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert again.val_accuracy == net.val_accuracy


def test_pretraining_is_deterministic(tmp_path):
    a = pretrained_classifier("tiny_vgg", cache=False, recipe=TINY, progress=False)
    b = pretrained_classifier("tiny_vgg", cache=False, recipe=TINY, progress=False)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper", "stale"])
def test_damaged_or_stale_cache_is_rebuilt_not_loaded(tmp_path, damage):
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

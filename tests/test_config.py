"""Scales, devices and seeding."""

import dataclasses

import pytest
import torch

from fcnlib.config import (
    SCALES,
    cache_dir,
    data_dir,
    describe_device,
    get_scale,
    pick_device,
    seed_everything,
)


def test_auto_is_lab_bench(monkeypatch):
    monkeypatch.delenv("FCN_SCALE", raising=False)
    assert get_scale().name == "lab"
    assert get_scale("auto").name == "lab"


def test_environment_variable_selects_scale(monkeypatch):
    monkeypatch.setenv("FCN_SCALE", "full")
    assert get_scale().name == "full"
    # An explicit argument (the notebook's parameters cell) wins over the environment.
    assert get_scale("lab").name == "lab"


def test_unknown_scale_names_the_choices(monkeypatch):
    with pytest.raises(ValueError, match="'lab', 'full' or 'auto'"):
        get_scale("huge")
    monkeypatch.setenv("FCN_SCALE", "gpu")
    with pytest.raises(ValueError, match="FCN_SCALE"):
        get_scale()


def test_scales_are_frozen_and_replaceable():
    lab = SCALES["lab"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        lab.image_size = 3
    small = lab.replace(image_size=64)
    assert small.image_size == 64 and lab.image_size == 128
    assert SCALES["full"].n_classes == 21


def test_pick_device(monkeypatch):
    monkeypatch.delenv("FCN_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else None
    dev = pick_device()
    if expected:
        assert dev.type == expected
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("FCN_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


def test_asking_for_missing_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # any machine, GPU or not
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        pick_device("cuda")
    monkeypatch.setenv("FCN_DEVICE", "cuda")  # set in the shell, perhaps long ago: named
    with pytest.raises(RuntimeError, match=r"\$FCN_DEVICE 'cuda'.*no CUDA GPU.*unset \$FCN_DEV"):
        pick_device()


@pytest.mark.parametrize("name", ["bogus", "meta", "cuda:x", "cpu:0:1"])
def test_a_name_that_is_no_device_is_refused_naming_where_it_came_from(monkeypatch, name):
    monkeypatch.delenv("FCN_DEVICE", raising=False)
    with pytest.raises(ValueError, match=f"device '{name}' is not a device to run on: expected"):
        pick_device(name)
    monkeypatch.setenv("FCN_DEVICE", name)
    with pytest.raises(ValueError, match=rf"^\$FCN_DEVICE '{name}' is not a device.*unset it"):
        pick_device()


def test_seed_everything_reproduces():
    seed_everything(5)
    a = torch.randn(4)
    g = seed_everything(5)
    b = torch.randn(4)
    assert torch.equal(a, b)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=seed_everything(5)))
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)


def test_cache_locations(monkeypatch, tmp_path):
    monkeypatch.setenv("FCN_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("FCN_DATA", raising=False)
    assert cache_dir() == tmp_path / "c"
    assert data_dir() == tmp_path / "c" / "data"
    monkeypatch.setenv("FCN_DATA", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"


@pytest.mark.parametrize(("threads", "text"), [(1, "cpu (1 thread)"), (2, "cpu (2 threads)")])
def test_describe_device_counts_the_cpu_threads(threads, text, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert describe_device("cpu") == text

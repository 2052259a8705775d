"""The benchmark runs (its numbers are printed by `python -m fcnlib.bench`, not asserted)."""

import math

import pytest
import torch

import fcnlib.backbones
from fcnlib.bench import bench_data, bench_throughput, main

TINY = {"backbone": "tiny_vgg", "size": 32, "device": "cpu"}


@pytest.fixture
def light(monkeypatch):
    """Random-weight nets only (no lab pre-training, no download), on one CPU thread: two
    threads slow down tenfold when another process shares the cores."""

    def refuse(*args, **kwargs):
        raise AssertionError("the throughput bench asked for pre-trained weights")

    monkeypatch.setattr(fcnlib.backbones, "pretrained_classifier", refuse)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bench_data_reports_positive_rates():
    rates = bench_data(size=16, batch_size=2, n_batches=1)
    assert set(rates) >= {"single items", "batched", "DataLoader (0 workers)"}
    assert all(r > 0 for r in rates.values())


def test_cli_prints(capsys):
    main(["data", "--size", "16", "--batch-size", "2"])
    assert "images/s" in capsys.readouterr().out


def test_throughput_reports_train_and_infer_rates(light):
    results = bench_throughput(**TINY, repeat=1)
    assert list(results) == [
        "fp32, align='caffe' (pad 100 + crop)",
        "fp32",
        "channels_last",
        "channels_last + autocast bfloat16",
    ]  # torch.compile only on CUDA unless asked
    for name, row in results.items():
        for mode in ("train", "infer"):
            assert isinstance(row[mode], float), (name, mode)
            assert math.isfinite(row[mode]) and row[mode] > 0, (name, mode)
        assert "train_peak_bytes" not in row  # GPU memory is reported on CUDA only


def test_throughput_one_mode(light):
    results = bench_throughput(**TINY, mode="infer", compile=False, repeat=1)
    assert all(row["train"] is None and row["infer"] > 0 for row in results.values())
    with pytest.raises(ValueError, match="mode"):
        bench_throughput(**TINY, mode="backward")


def test_cli_throughput_prints_both_columns(capsys, light):
    main(["throughput", "--size", "32", "--backbone", "tiny_vgg", "--device", "cpu",
          "--batch-size", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert "torch " in out and "batch 2" in out
    assert "train img/s" in out and "infer img/s" in out
    rows = [line for line in out.splitlines() if line.strip().startswith(("fp32", "channels"))]
    assert len(rows) == 4 and "torch.compile" not in "".join(rows)
    for row in rows:
        train, infer = map(float, row.split()[-2:])
        assert train > 0 and infer > 0

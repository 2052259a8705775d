"""The benchmark runs (its numbers are printed by `python -m fcnlib bench`, not asserted)."""

import math

import pytest
import torch

import fcnlib.backbones
from fcnlib.bench import bench_data, bench_throughput
from fcnlib.cli import main as cli_main

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
    cli_main(["bench", "data", "--size", "16", "--batch-size", "2"])
    assert "images/s" in capsys.readouterr().out


@pytest.mark.slow
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


@pytest.mark.slow
def test_throughput_one_mode(light):
    results = bench_throughput(**TINY, mode="infer", compile=False, repeat=1)
    assert all(row["train"] is None and row["infer"] > 0 for row in results.values())
    with pytest.raises(ValueError, match="mode"):
        bench_throughput(**TINY, mode="backward")


@pytest.mark.slow
def test_cli_throughput_prints_both_columns(capsys, light):
    cli_main(["bench", "throughput", "--size", "32", "--backbone", "tiny_vgg", "--device", "cpu",
          "--batch-size", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert "torch " in out and "batch 2" in out
    assert "train img/s" in out and "infer img/s" in out
    rows = [line for line in out.splitlines() if line.strip().startswith(("fp32", "channels"))]
    assert len(rows) == 4 and "torch.compile" not in "".join(rows)
    for row in rows:
        train, infer = map(float, row.split()[-2:])
        assert train > 0 and infer > 0


PIPELINE = {"images": 8, "size": (64, 64), "crop": 48, "backbone": "tiny_vgg", "steps": 2,
            "workers": (0,), "windows": 2, "device": "cpu"}  # fmt: skip


def test_pipeline_measures_each_part_and_removes_its_data(light):
    from pathlib import Path

    from fcnlib.bench import bench_pipeline

    r = bench_pipeline(**PIPELINE)
    data = r["data"]
    assert data["written"] and data["removed"] and data["images"] == 8
    assert data["size"] == (64, 64)
    assert not Path(data["root"]).exists()  # the temporary directory is gone
    rates = [r["loader"][0], r["step"], r["loop"][0], *r["loader_windows"][0],
             *r["step_windows"], *r["loop_windows"][0]]  # fmt: skip
    assert len(rates) == 3 + 3 * 2
    assert all(isinstance(x, float) and math.isfinite(x) and x > 0 for x in rates), rates
    assert math.isfinite(r["item_ms"]) and r["item_ms"] > 0
    assert r["loop_over_step"][0] == pytest.approx(r["loop"][0] / r["step"])
    p = r["projection"]
    assert (p["iterations_per_stage"], p["batch_size"], p["images"]) == (100_000, 1, 300_000)
    assert len(p["stages"]) == 3 and p["loop_workers"] == 0
    assert p["hours_loop"] == pytest.approx(3 * 100_000 / r["loop"][0] / 3600)
    assert p["hours_step"] == pytest.approx(3 * 100_000 / r["step"] / 3600)
    assert p["epochs"] == pytest.approx(300_000 / 8498)
    assert r["memory"] is None  # GPU memory is reported on CUDA only
    assert r["config"]["batch_size"] == 1 and r["config"]["loss_reduction"] == "sum"
    assert r["config"]["compact"] is True  # uint8 handed over, as train --data voc does


def test_pipeline_refuses_bad_options():
    from fcnlib.bench import bench_pipeline

    with pytest.raises(ValueError, match="workers"):
        bench_pipeline(**{**PIPELINE, "workers": (0, -1)})
    with pytest.raises(ValueError, match="steps"):
        bench_pipeline(**{**PIPELINE, "steps": 0})


def test_cli_pipeline_keeps_root_and_reuses_it(capsys, light, tmp_path):
    from fcnlib import cli
    from fcnlib.bench import bench_pipeline

    cli.main(["bench", "pipeline", "--root", str(tmp_path), "--images", "6", "--size", "64",
              "--crop", "48", "--backbone", "tiny_vgg", "--device", "cpu", "--steps", "2",
              "--workers", "0", "--amp", "off", "--float-handover"])  # fmt: skip
    printed = capsys.readouterr().out
    out = " ".join(printed.split())  # phrases may be wrapped across lines
    assert "6 SBD-format training images of 48 x 64 written to" in out  # width 64, height 3/4
    assert "handed over as float32 images and int64 labels" in out
    assert "removed at the end" not in out
    for part in ("loader alone", "one item", "step alone", "loop / step", "projection", " h at"):
        assert part in out, part
    assert (tmp_path / "sbd" / "train.txt").is_file()  # kept
    again = bench_pipeline(**{**PIPELINE, "root": tmp_path, "images": 3})
    assert not again["data"]["written"] and not again["data"]["removed"]
    assert again["data"]["images"] == 6  # what was found, nothing written over it
    assert (tmp_path / "sbd" / "train.txt").is_file()


def test_cli_parses_bench_pipeline_options():
    from fcnlib.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["bench", "pipeline", "--workers", "0, 2,4", "--steps", "5",
                              "--images", "16", "--crop", "96", "--amp", "bf16",
                              "--channels-last", "--batch-size", "8"])  # fmt: skip
    assert (args.what, args.workers, args.steps, args.images, args.crop) == (
        "pipeline",
        (0, 2, 4),
        5,
        16,
        96,
    )
    assert (args.amp, args.channels_last, args.batch_size) == ("bf16", True, 8)
    assert parser.parse_args(["bench", "pipeline"]).channels_last is None  # device default
    for bad in (["--workers", "0,-2"], ["--workers", "two"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["bench", "pipeline", *bad])

"""fit's runs: explicit resume, changed settings applied or refused, divergence, the run record."""

import dataclasses
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fcnlib
from fcnlib import _io, train
from fcnlib.checkpoint import run_files, save_checkpoint
from fcnlib.record import RecordInUseError, lock_path, record_files
from fcnlib.train import (
    DivergenceError,
    fit,
    load_checkpoint,
    recipe,
    resume_conflicts,
    train_one_epoch,
)

N_CLASSES = 3


def data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, N_CLASSES, (n, 8, 8), generator=g)
    images = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    images += 0.3 * torch.randn(images.shape, generator=g)
    return images, labels


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, N_CLASSES, 1))


def config(**changes):
    return recipe("fast", **{"batch_size": 8, "epochs": 2, "amp": "off", **changes})


def run(path, cfg, model=None, **kwargs):
    train_data, val_data = data(), data(8, seed=1)
    return fit(model or net(), train_data, val_data, config=cfg, n_classes=N_CLASSES,
               device="cpu", checkpoint=path, progress=False, tensorboard=False,
               **kwargs)  # fmt: skip


def strip(history):
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in history]


# ----------------------------------------------------------------------------- resume


def test_a_second_run_on_a_checkpoint_is_refused_without_resume(tmp_path):
    path = tmp_path / "c.pt"
    run(path, config())
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"c\.pt already holds a run \(2 of 2 epochs.*resume"):
        run(path, config())
    with pytest.raises(FileExistsError, match="already holds a run"):
        run(path, config(lr=1e4))  # used to train at the old rate and store 1e4
    assert path.read_bytes() == before


def test_a_finished_run_resumed_returns_at_once(tmp_path):
    path = tmp_path / "c.pt"
    first = run(path, config())
    again = run(path, config(), resume=True)
    assert strip(again) == strip(first)


def test_resume_without_a_checkpoint_starts_a_new_run(tmp_path):
    path = tmp_path / "new.pt"
    assert len(run(path, config(epochs=1), resume=True)) == 1
    assert load_checkpoint(path)["epoch"] == 1


def test_a_longer_resumed_run_follows_the_longer_schedule(tmp_path):
    # one-cycle over 1 epoch, then extended to 3: used to crash in OneCycleLR
    path, steps = tmp_path / "c.pt", 3  # 24 images, batch 8
    run(path, config(epochs=1))
    extended = run(path, config(epochs=3), resume=True)
    assert [r["epoch"] for r in extended] == [1, 2, 3]
    assert load_checkpoint(path)["config"]["epochs"] == 3
    # from the resumed step on, every lr is the 3-epoch schedule's at that step
    opt = torch.optim.AdamW(net().parameters(), lr=config().lr)
    sched = train.make_scheduler(opt, config(epochs=3), 3 * steps)
    want = {}
    for step in range(1, 3 * steps + 1):
        opt.step()
        sched.step()
        want[step] = opt.param_groups[0]["lr"]
    assert [r["lr"] for r in extended[1:]] == [want[2 * steps], want[3 * steps]]


class CrashAt(nn.Module):
    """``net()`` that raises on training call ``at``, as a power cut would."""

    def __init__(self, at=None):
        super().__init__()
        self.inner, self.at, self.calls = net(), at, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                raise RuntimeError("power cut")
        return self.inner(x)


@pytest.mark.parametrize("schedule", ["poly", "onecycle", "fixed"])
def test_a_resumed_run_is_bit_identical_whatever_the_schedule(tmp_path, schedule):
    cfg = config(epochs=3, schedule=schedule)  # 3 steps per epoch
    straight = CrashAt()
    expected = run(None, cfg, model=straight)
    path = tmp_path / "c.pt"
    with pytest.raises(RuntimeError, match="power cut"):
        run(path, cfg, model=CrashAt(at=3 + 2))  # in epoch 2
    assert load_checkpoint(path)["epoch"] == 1
    resumed = CrashAt()
    history = run(path, cfg, model=resumed, resume=True)
    assert strip(history) == strip(expected)
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_a_new_lr_on_resume_is_applied(tmp_path):
    path = tmp_path / "c.pt"
    cfg = recipe("paper", batch_size=8, epochs=1, lr=1e-3)  # a fixed rate, biases at 2x
    run(path, cfg)
    history = run(path, cfg.replace(epochs=2, lr=1e-2), resume=True)
    assert [r["lr"] for r in history] == [1e-3, 1e-2]
    state = load_checkpoint(path)
    assert state["config"]["lr"] == 1e-2
    groups = {g["name"]: g["lr"] for g in state["optimizer"]["param_groups"]}
    assert groups == {"weights": 1e-2, "biases": 2e-2}


def test_other_changes_on_resume_are_refused(tmp_path):
    path = tmp_path / "c.pt"
    run(path, config())
    with pytest.raises(ValueError, match=r"batch_size 8 -> 4.*momentum 0\.9 -> 0\.5"):
        run(path, config(batch_size=4, momentum=0.5, epochs=4), resume=True)
    with pytest.raises(ValueError, match=r"epochs 2 -> 1.*at least the 2 done"):
        run(path, config(epochs=1), resume=True)
    with pytest.raises(ValueError, match=r"other extra values.*'size': None.*'size': 32"):
        run(path, config(epochs=3), resume=True, extra={"size": 32})
    assert load_checkpoint(path)["epoch"] == 2
    assert resume_conflicts(config().to_dict(), config(epochs=9, lr=1.0, num_workers=2)) == {}


def test_a_resumed_run_keeps_the_precision_it_was_trained_in(tmp_path, monkeypatch):
    # amp="auto" is float32 on this CPU; FCN_CPU_BF16=1 stands in for a machine where "auto"
    # means bf16 (a GPU of compute capability 8 or more)
    monkeypatch.delenv("FCN_CPU_BF16", raising=False)
    path = tmp_path / "c.pt"
    run(path, config(amp="auto", epochs=1))
    assert load_checkpoint(path)["precision"] == "float32"
    assert load_checkpoint(tmp_path / "c.best.pt")["precision"] == "float32"
    monkeypatch.setenv("FCN_CPU_BF16", "1")
    message = r"trained in float32, and amp='auto' means bf16 here\. Pass amp='off'"
    with pytest.raises(ValueError, match=message):
        run(path, config(amp="auto", epochs=2), resume=True)
    assert load_checkpoint(path)["epoch"] == 1
    # the setting may change where it keeps the precision, and the record says what ran
    run(path, config(amp="off", epochs=2), resume=True)
    state = load_checkpoint(path)
    assert (state["epoch"], state["precision"], state["config"]["amp"]) == (2, "float32", "off")
    # a bf16 run: its precision recorded, and kept by a resume that forces it
    bf16 = tmp_path / "bf16.pt"
    run(bf16, config(amp="auto", epochs=1))
    assert load_checkpoint(bf16)["precision"] == "bf16"
    monkeypatch.delenv("FCN_CPU_BF16")
    with pytest.raises(ValueError, match=r"trained in bf16.*means float32 here.*amp='bf16'"):
        run(bf16, config(amp="auto", epochs=2), resume=True)
    run(bf16, config(amp="bf16", epochs=2), resume=True)
    assert load_checkpoint(bf16)["precision"] == "bf16"


def test_a_checkpoint_without_a_recorded_precision_keeps_its_amp_setting(tmp_path):
    path = tmp_path / "c.pt"
    run(path, config(amp="off", epochs=1))
    state = load_checkpoint(path)
    del state["precision"]  # as written before precisions were recorded
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"amp 'off' -> 'auto'"):
        run(path, config(amp="auto", epochs=2), resume=True)
    run(path, config(amp="off", epochs=2), resume=True)
    assert load_checkpoint(path)["precision"] == "float32"


@pytest.mark.parametrize("before", [False, True])
def test_fit_gives_the_cudnn_benchmark_flag_back(tmp_path, monkeypatch, before):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", before)
    real = train.prepare_model

    def as_on_cuda(model, *, config, device, ddp=False):
        torch.backends.cudnn.benchmark = config.cudnn_benchmark  # what it does on CUDA
        return real(model, config=config, device=device, ddp=ddp)

    monkeypatch.setattr(train, "prepare_model", as_on_cuda)
    seen = []
    model = net()
    model.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.benchmark))
    run(tmp_path / "c.pt", config(epochs=1, cudnn_benchmark=not before), model=model)
    assert seen and set(seen) == {not before}  # the run's own setting while it ran
    assert torch.backends.cudnn.benchmark is before


def test_extra_is_compared_on_resume(tmp_path):
    path = tmp_path / "c.pt"
    run(path, config(epochs=1), extra={"size": 64})
    run(path, config(epochs=2), resume=True, extra={"size": 64})
    assert load_checkpoint(path)["epoch"] == 2


# ----------------------------------------------------------------------------- divergence


class Exploding(nn.Module):
    """Confidently wrong logits whose scale grows 10x per training call after ``calm`` calls."""

    def __init__(self, calm):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.calm, self.calls = calm, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        scale = 10.0 ** max(0, self.calls - self.calm)
        wrong = torch.zeros(x.shape[0], N_CLASSES, *x.shape[2:])
        wrong[:, -1] = 1.0  # labels are 0 or 1 below: class 2 is always wrong
        return self.w * wrong * scale


def test_an_exploding_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    images, labels = torch.rand(32, 3, 4, 4), torch.randint(0, 2, (32, 4, 4))
    path = tmp_path / "c.pt"
    model = Exploding(calm=4)  # epoch 1: 4 calm steps (loss 1.55); epoch 2: x10 per step
    expected = r"loss 990 at epoch 2, step 2 .*100x the loss the run started.*c\.pt keeps epoch 1"
    with pytest.raises(DivergenceError, match=expected):
        fit(model, (images, labels), config=config(epochs=3), n_classes=N_CLASSES,
            checkpoint=path, progress=False, tensorboard=False)  # fmt: skip
    assert load_checkpoint(path)["epoch"] == 1
    # off: the same run goes on (finite losses)
    model = Exploding(calm=4)
    history = fit(model, (images, labels), config=config(epochs=2), n_classes=N_CLASSES,
                  progress=False, divergence=None)  # fmt: skip
    assert math.isfinite(history[-1]["loss"]) and history[-1]["loss"] > 1e3


def test_the_divergence_bound_is_not_tripped_by_ordinary_training():
    images, labels = data()
    model = net()
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    optimizer = train.make_optimizer(model, config())
    for epoch in range(3):
        train_one_epoch(model, loader, optimizer, config=config(), device="cpu", epoch=epoch,
                        progress=False)  # fmt: skip


def test_weights_that_stop_being_finite_stop_the_run(tmp_path):
    path = tmp_path / "c.pt"  # one step per epoch: the loss is still finite at that step
    run(path, recipe("paper", batch_size=24, epochs=1))
    with pytest.raises(
        FloatingPointError, match=r"weights are no longer finite after epoch 2.*keeps epoch 1"
    ):
        run(path, recipe("paper", batch_size=24, epochs=2, lr=math.inf), resume=True)
    state = load_checkpoint(path)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


# ----------------------------------------------------------------------------- the run record


def test_the_run_keeps_best_weights_and_metrics_beside_the_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "runs" / "fcn.pt"
    scores = iter([0.5, 0.7, 0.6])  # mean IU per epoch: the best is epoch 2
    real = train.evaluate

    def fake_evaluate(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), mean_iu=next(scores))

    monkeypatch.setattr(train, "evaluate", fake_evaluate)
    history = run(path, config(epochs=3))
    files = run_files(path)
    best = load_checkpoint(files["best"])
    assert best["epoch"] == 2 and best["optimizer"] is None
    lines = [json.loads(line) for line in files["metrics"].read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert [r["mean_iu"] for r in lines] == [0.5, 0.7, 0.6]
    assert lines[0]["loss"] == history[0]["loss"] and len(lines[0]["iu"]) == N_CLASSES


def test_metrics_are_strict_json_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    from fcnlib.checkpoint import write_metrics

    write_metrics(path, [{"epoch": 1, "mean_iu": math.nan, "iu": [0.5, math.nan]}])
    assert path.read_text() == '{"epoch": 1, "mean_iu": null, "iu": [0.5, null]}\n'


def test_tensorboard_gets_every_epoch_when_installed(tmp_path, monkeypatch):
    logged = []

    class Writer:
        def __init__(self, log_dir, purge_step):
            logged.append(("open", log_dir, purge_step))

        def add_scalar(self, tag, value, step):
            logged.append((tag, step))

        def flush(self):
            pass

        def close(self):
            logged.append(("close",))

    def writer(path, start):
        return Writer(str(run_files(path)["tensorboard"]), start + 1)

    monkeypatch.setattr(train, "_tensorboard_writer", writer)
    path = tmp_path / "fcn.pt"
    train_data, val_data = data(), data(8, seed=1)
    fit(net(), train_data, val_data, config=config(), n_classes=N_CLASSES, checkpoint=path,
        progress=False)  # fmt: skip
    assert logged[0] == ("open", str(tmp_path / "fcn.tb"), 1)
    assert ("train/loss", 1) in logged and ("val/mean_iu", 2) in logged
    assert logged[-1] == ("close",)


def test_the_real_tensorboard_record_has_each_epoch_once_after_a_resume(tmp_path):
    """torch's SummaryWriter and TensorBoard's own reader: a resumed run's epochs replace the
    events that a stopped run wrote after its last checkpoint."""
    pytest.importorskip("tensorboard")  # in requirements.txt; optional for fcnlib's users
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    path = tmp_path / "fcn.pt"
    fit_args = dict(n_classes=N_CLASSES, device="cpu", checkpoint=path, progress=False)
    fit(net(), data(), data(8, seed=1), config=config(epochs=2), **fit_args)
    # a run that logged epoch 3 and was killed before its checkpoint: a stale event
    stale = SummaryWriter(str(run_files(path)["tensorboard"]))
    stale.add_scalar("train/loss", 1e6, 3)
    stale.close()
    history = fit(net(), data(), data(8, seed=1), config=config(epochs=3), resume=True,
                  **fit_args)  # fmt: skip
    events = EventAccumulator(str(run_files(path)["tensorboard"]))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [step for step, _ in loss] == [1, 2, 3]
    assert [value for _, value in loss] == pytest.approx([r["loss"] for r in history])
    assert [e.step for e in events.Scalars("val/mean_iu")] == [1, 2, 3]


def test_tensorboard_is_optional(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert train._tensorboard_writer(tmp_path / "fcn.pt", 0) is None


def test_a_killed_save_leaves_the_last_checkpoint_and_no_stray_files(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    run(path, config(epochs=1))
    before = path.read_bytes()

    def killed(obj, f):  # half a file, then the process is interrupted
        f.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(_io.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        run(path, config(epochs=2), resume=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
    # a SIGKILL leaves the temporary file: the next run on that path removes it
    stray = tmp_path / ".c.pt.abc123.tmp"
    stray.write_bytes(b"PK\x03\x04 half")
    run(path, config(epochs=2), resume=True)
    assert not stray.exists() and load_checkpoint(path)["epoch"] == 2


def test_epoch_times_are_the_epochs_own(tmp_path):
    start = time.perf_counter()
    history = run(tmp_path / "c.pt", config())
    wall = time.perf_counter() - start
    for record in history:
        assert 0 < record["seconds"] < wall
        assert record["images_per_s"] == pytest.approx(24 / record["seconds"])


# ----------------------------------------------------------------------------- one run per record


def _record(path):
    return {key: p.read_bytes() for key, p in record_files(path).items() if p.is_file()}


def test_a_second_run_on_a_record_in_use_is_refused(tmp_path):
    path, seen = tmp_path / "c.pt", []

    def second_run():  # another thread: as another process, it must not share the lock
        try:
            run(tmp_path / "c", config(epochs=1))  # c and c.pt share c.best.pt, c.metrics.jsonl
        except Exception as e:
            seen.append(e)
        else:
            seen.append(None)

    def while_training(module, inputs, output):
        if module.training and not seen:
            thread = threading.Thread(target=second_run)
            thread.start()
            thread.join()

    model = net()
    model.register_forward_hook(while_training)
    run(path, config(epochs=1), model=model)
    holder = rf"pid {os.getpid()} on host {re.escape(socket.gethostname())}, since \d{{4}}-"
    assert isinstance(seen[0], RecordInUseError), seen
    message = rf"c is in use: another training run .*\({holder}.*kill {os.getpid()}"
    assert re.search(message, str(seen[0]))
    assert not lock_path(path).exists()  # released at the end
    # also when the run raises
    with pytest.raises(RuntimeError, match="power cut"):
        run(tmp_path / "d.pt", config(epochs=2), model=CrashAt(at=5))
    assert load_checkpoint(tmp_path / "d.pt")["epoch"] == 1
    assert not lock_path(tmp_path / "d.pt").exists()


def test_the_lock_names_its_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    path = tmp_path / "c.pt"
    hold = (
        "import sys, time\nfrom fcnlib.record import hold_record\n"
        "with hold_record(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(fcnlib.__file__).parents[1])}
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(path)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(RecordInUseError, match=rf"c\.pt is in use.*pid {holder.pid} on host"):
            run(path, config(epochs=1))
    finally:
        holder.kill()  # as SIGKILL or a power cut would: the lock file stays behind
        holder.wait()
    assert lock_path(path).exists() and not path.exists()
    run(path, config(epochs=1))
    assert load_checkpoint(path)["epoch"] == 1 and not lock_path(path).exists()


def test_a_new_run_never_replaces_another_runs_files(tmp_path):
    path = tmp_path / "c.pt"
    run(path, config(epochs=1))
    whole = r"delete the run's whole record, .*c\.pt, .*c\.best\.pt, .*c\.metrics\.jsonl, .*c\.tb/"
    with pytest.raises(FileExistsError, match=whole):
        run(path, config(epochs=1))
    path.unlink()  # what the refusal used to advise
    kept = _record(path)
    others = r"c\.pt would replace the files of another run: .*c\.best\.pt, .*c\.metrics\.jsonl\. "
    for resume in (False, True):  # without a checkpoint, resume=True starts a new run too
        with pytest.raises(FileExistsError, match=others + "Delete them"):
            run(path, config(epochs=1), resume=resume)
    assert _record(path) == kept
    # a run at col/x after one at col/x.pt: they would share x.best.pt and x.metrics.jsonl
    first = tmp_path / "col" / "x.pt"
    run(first, config(epochs=1))
    kept = _record(first)
    with pytest.raises(FileExistsError, match=r"x\.best\.pt, .*x\.metrics\.jsonl"):
        run(tmp_path / "col" / "x", config(epochs=1))
    assert _record(first) == kept and not (tmp_path / "col" / "x").exists()


def test_a_run_stopped_before_its_first_checkpoint_leaves_nothing_in_the_way(tmp_path):
    path = tmp_path / "runs" / "c.pt"
    with pytest.raises(RuntimeError, match="power cut"):  # Ctrl-C in epoch 1, say
        fit(CrashAt(at=2), data(), data(8, seed=1), config=config(), n_classes=N_CLASSES,
            checkpoint=path, progress=False)  # fmt: skip
    # no NAME.tb/ (opened with the first checkpoint), no lock, no empty folder
    assert list(tmp_path.iterdir()) == []
    # the same command again: a new run
    fit(net(), data(), data(8, seed=1), config=config(epochs=1), n_classes=N_CLASSES,
        checkpoint=path, progress=False)  # fmt: skip
    assert load_checkpoint(path)["epoch"] == 1


# ----------------------------------------------------------------------------- repair on resume


def _scored(monkeypatch, *mean_ius):
    """Validation scores the given mean IU, epoch after epoch."""
    scores, real = iter(mean_ius), train.evaluate

    def fake_evaluate(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), mean_iu=next(scores))

    monkeypatch.setattr(train, "evaluate", fake_evaluate)


def _killed_at(monkeypatch, name, epoch, error):
    """The save of the record's file ``name`` at ``epoch`` fails with ``error``."""
    real = train.save_checkpoint

    def save(path, **kwargs):
        if Path(path).name == name and kwargs["epoch"] == epoch:
            raise error
        return real(path, **kwargs)

    monkeypatch.setattr(train, "save_checkpoint", save)


def _metrics(path):
    return [json.loads(line) for line in run_files(path)["metrics"].read_text().splitlines()]


def test_a_run_killed_while_saving_its_best_weights_is_repaired_on_resume(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    _scored(monkeypatch, 0.5, 0.6, 0.7)  # every epoch is the best so far
    _killed_at(monkeypatch, "c.best.pt", 3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run(path, config(epochs=3))
    monkeypatch.undo()
    stale = [
        tmp_path / f".{name}.k1ll3d00.tmp" for name in ("c.pt", "c.best.pt", "c.metrics.jsonl")
    ]
    for tmp in stale:  # what SIGKILL mid-write leaves of each file
        tmp.write_bytes(b"half")
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and load_checkpoint(run_files(path)["best"])["epoch"] == 2
    assert len(_metrics(path)) == 2

    history = run(path, config(epochs=3), resume=True)  # finished: nothing to train
    best = load_checkpoint(run_files(path)["best"])
    assert best["epoch"] == 3 and best["optimizer"] is None
    for key, value in state["model"].items():
        assert torch.equal(best["model"][key], value), key
    assert best["history"] == state["history"] and best["rng"]["torch"].equal(state["rng"]["torch"])
    assert [r["epoch"] for r in _metrics(path)] == [1, 2, 3]
    assert [r["mean_iu"] for r in _metrics(path)] == [r["mean_iu"] for r in history]
    assert [p for p in stale if p.exists()] == []


def test_a_full_disk_at_the_first_best_save_is_repaired_on_resume(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    _scored(monkeypatch, 0.7, 0.5)  # the first epoch stays the best
    _killed_at(monkeypatch, "c.best.pt", 1, OSError(28, "No space left on device"))
    with pytest.raises(OSError, match="No space left"):
        run(path, config(epochs=2))
    assert load_checkpoint(path)["epoch"] == 1 and not run_files(path)["best"].exists()
    monkeypatch.setattr(train, "save_checkpoint", save_checkpoint)  # room on the disk again
    history = run(path, config(epochs=2), resume=True)
    assert [r["mean_iu"] for r in history] == [0.7, 0.5]
    assert load_checkpoint(run_files(path)["best"])["epoch"] == 1
    assert [r["epoch"] for r in _metrics(path)] == [1, 2]


def test_best_weights_lost_for_good_are_reported_not_pretended(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    _scored(monkeypatch, 0.7, 0.5, 0.6)
    run(path, config(epochs=2))
    run_files(path)["best"].unlink()  # epoch 1's weights: in no other file
    lost = (
        r"c\.best\.pt is missing, but the run's best mean IU \(0\.7000\) was epoch 1, and "
        r".*c\.pt holds epoch 2: those weights are lost"
    )
    with pytest.warns(UserWarning, match=lost):
        run(path, config(epochs=3), resume=True)
    assert not run_files(path)["best"].exists()  # epoch 3 (0.6) did not beat epoch 1


def test_a_best_weights_file_is_not_resumed(tmp_path):
    path = tmp_path / "c.pt"
    run(path, config(epochs=1))
    best = run_files(path)["best"]
    before = best.read_bytes()
    refused = (
        r"c\.best\.pt: it is a best-weights file.*optimizer afresh\. Resume from .*c\.pt, or "
        r"start a new run from these weights"
    )
    with pytest.raises(ValueError, match=refused):
        run(best, config(epochs=2), resume=True)
    assert best.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.best.pt", "c.metrics.jsonl", "c.pt"]


# ----------------------------------------------------------------------------- before any work


def test_names_too_long_for_the_file_system_are_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: pytest.fail("it trained"))
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "x" * (limit - 10) + ".pt"  # fits; the metrics file beside it does not
    too_long = (
        r"the name is too long\. The run writes \w+\.metrics\.jsonl through a temporary file of "
        rf"\d+ characters, and the file system of .* allows {limit}\. Give a checkpoint name "
        r"of at most (\d+) characters"
    )
    with pytest.raises(ValueError, match=too_long) as info:
        run(tmp_path / name, config(epochs=1))
    assert list(tmp_path.iterdir()) == []
    longest = int(re.search(too_long, str(info.value)).group(1))
    monkeypatch.undo()
    run(tmp_path / ("y" * (longest - 3) + ".pt"), config(epochs=1))  # the advice is right
    with pytest.raises(ValueError, match=too_long):
        run(tmp_path / ("z" * (longest - 2) + ".pt"), config(epochs=1))


def test_a_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: pytest.fail("it trained"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    import fcnlib.record

    real = fcnlib.record.check_writable

    def read_only(folder):  # root writes anywhere: stand in for a read-only folder
        if Path(folder) == locked:
            raise PermissionError(13, "Permission denied")
        real(folder)

    monkeypatch.setattr(fcnlib.record, "check_writable", read_only)
    with pytest.raises(PermissionError, match=r"new/c\.pt: cannot write in .*locked"):
        run(locked / "new" / "c.pt", config(epochs=1))


# ----------------------------------------------------------------------------- processes


def test_a_run_is_resumed_only_by_as_many_processes_as_trained_it(tmp_path):
    path = tmp_path / "c.pt"
    run(path, config(epochs=1))
    state = load_checkpoint(path)
    assert state["world_size"] == 1
    state["world_size"] = 2  # as torchrun --nproc_per_node=2 saves it
    torch.save(state, path)
    other = (
        r"trained by 2 processes \(torchrun\) and this run is one plain process.*Resume it "
        r"with torchrun --nproc_per_node=2"
    )
    with pytest.raises(ValueError, match=other):
        run(path, config(epochs=2), resume=True)
    # a checkpoint of an older fcnlib records no number: its epochs' steps must match
    del state["world_size"]
    torch.save(state, path)
    run(path, config(epochs=2), resume=True)  # 3 steps per epoch then and now
    state = load_checkpoint(path)
    del state["world_size"]
    for record in state["history"]:
        record["steps"] = 2  # 24 images on 2 processes, batch 8
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"its epochs took 2 steps and this run's would take 3"):
        run(path, config(epochs=3), resume=True)

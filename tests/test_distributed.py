"""fcnlib.distributed: two gloo processes on the CPU give the single-process answers.

One pair of processes is started for the whole module (starting them is the slow part); each
rank runs every scenario and saves what it saw to a file, and the tests compare those files
with the same computation done here in a single process.
"""

import contextlib
import datetime
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from fcnlib.distributed import (
    DistInfo,
    ShardSampler,
    barrier,
    cleanup,
    init_distributed,
    is_distributed,
    is_main_process,
    reduce_epoch_stats,
    wrap_ddp,
)
from fcnlib.train import evaluate, fit, load_checkpoint, make_optimizer, recipe, train_one_epoch

WORLD = 2
N_CLASSES = 4
TIMEOUT_S = 90  # a hung collective fails after this long instead of blocking the test run
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def scenes(n: int, seed: int, void: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random 3x8x8 images with labels 0..3, a quarter of them void (255) if asked."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 8, 8, generator=g)
    labels = torch.randint(0, N_CLASSES, (n, 8, 8), generator=g)
    if void:
        labels[torch.rand(n, 8, 8, generator=g) < 0.25] = 255
    return images, labels


def net(seed: int, *, batchnorm: bool) -> nn.Module:
    torch.manual_seed(seed)
    norm = nn.BatchNorm2d(8) if batchnorm else nn.Identity()
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm, nn.ReLU(), nn.Conv2d(8, N_CLASSES, 1))


def eval_model() -> nn.Module:
    model = net(0, batchnorm=True)
    model[1].running_mean.uniform_(-0.2, 0.2)  # non-trivial statistics, the same on every rank
    return model.eval()


# 7 validation images: not divisible by 2, so a padded split would count one image twice
EVAL_DATA = dict(n=7, seed=1, void=True)
# the DDP step: 2 steps of 4 images in one process = 2 steps of 2 images on each of 2 ranks
STEP_DATA, STEP_BATCH, STEPS = dict(n=8, seed=2, void=False), 4, 2
STEP_CONFIG = dict(lr=0.05, batch_size=STEP_BATCH)  # the paper's SGD, momentum, bias 2x lr
# fit end to end: 9 training images (DistributedSampler pads), 7 validation images
FIT_TRAIN, FIT_VAL = dict(n=9, seed=3, void=True), EVAL_DATA
FIT_CONFIG = dict(epochs=2, batch_size=2, amp="off")  # the "fast" recipe
LONGER = {**FIT_CONFIG, "epochs": 3}  # a resumed run that would train one more epoch


def step_batches(rank: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of the DDP step test; rank ``r`` gets the ``r``-th half of each full batch."""
    images, labels = scenes(**STEP_DATA)
    batches = []
    for s in range(STEPS):
        lo, hi = s * STEP_BATCH, (s + 1) * STEP_BATCH
        if rank is not None:
            half = STEP_BATCH // WORLD
            lo, hi = lo + rank * half, lo + (rank + 1) * half
        batches.append((images[lo:hi], labels[lo:hi]))
    return batches


def _worker(rank: int, port: int, out: str) -> None:
    """One rank: joins the group through torchrun's variables, runs every scenario, saves."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = init_distributed("gloo", timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        result = {"info": [info.rank, info.world_size, info.local_rank, info.backend]}
        result["info"].append(str(info.device))

        # evaluation: each rank scores its shard; the matrices are summed
        val = TensorDataset(*scenes(**EVAL_DATA))
        for name, shard in (
            ("confusion", ShardSampler(val)),
            ("padded", DistributedSampler(val, shuffle=False)),  # what not to do
        ):
            loader = DataLoader(val, batch_size=2, sampler=shard)
            scores = evaluate(eval_model(), loader, n_classes=N_CLASSES, all_reduce=True)
            result[name] = scores.confusion

        # training: DDP averages the gradients of the two half batches
        config = recipe("paper", **STEP_CONFIG)
        model = wrap_ddp(net(rank + 10, batchnorm=False), "cpu")  # rank 0's weights win
        optimizer = make_optimizer(model.module, config)
        batches = step_batches(rank)
        train_one_epoch(model, batches, optimizer, config=config, device="cpu", progress=False)
        result["stepped"] = model.module.state_dict()

        # fit end to end, with BatchNorm and different initial weights on each rank
        model = net(rank + 20, batchnorm=True)
        history = fit(
            model,
            scenes(**FIT_TRAIN),
            scenes(**FIT_VAL),
            config=recipe("fast", **FIT_CONFIG),
            n_classes=N_CLASSES,
            device="cpu",
            checkpoint=Path(out) / "fit" / "run.pt",
            progress=False,
        )
        result["fit_history"] = list(history)
        result["fit_state"] = model.state_dict()

        # a run saved by one process, resumed by two: refused on every rank, before any step
        try:
            fit(net(rank + 20, batchnorm=True), scenes(**FIT_TRAIN), scenes(**FIT_VAL),
                config=recipe("fast", **LONGER), n_classes=N_CLASSES, device="cpu",
                checkpoint=Path(out) / "single" / "run.pt", resume=True,
                progress=False)  # fmt: skip
        except ValueError as e:
            result["resumed_single"] = str(e)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """What each of the two ranks saved."""
    out = tmp_path_factory.mktemp("ddp")
    fit(net(20, batchnorm=True), scenes(**FIT_TRAIN), scenes(**FIT_VAL),
        config=recipe("fast", **FIT_CONFIG), n_classes=N_CLASSES, device="cpu",
        checkpoint=out / "single" / "run.pt", progress=False)  # fmt: skip
    context = mp.start_processes(
        _worker, args=(free_port(), str(out)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not context.join(timeout=1):  # raises if a rank failed (and stops the others)
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} ranks did not finish within {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
    return [{"dir": out, **torch.load(out / f"rank{r}.pt")} for r in range(WORLD)]


# ----------------------------------------------------------------------------- one process


def test_init_is_a_no_op_without_torchrun(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    info = init_distributed()
    assert info == DistInfo(rank=0, world_size=1, local_rank=0, backend=None, device=None)
    assert info.is_main and not dist.is_initialized()
    assert is_main_process() and not is_distributed()
    barrier()  # no group: returns at once
    stats = {"loss": 0.5, "images_per_s": 10.0, "steps": 3}
    assert reduce_epoch_stats(stats) == stats
    cleanup()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_partition_the_dataset_without_padding(world):
    for n in range(10):
        shards = [list(ShardSampler(range(n), num_replicas=world, rank=r)) for r in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(n))
        assert [len(ShardSampler(range(n), num_replicas=world, rank=r)) for r in range(world)] == [
            len(s) for s in shards
        ]
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(range(3), num_replicas=2, rank=2)


# ----------------------------------------------------------------------------- two processes


@pytest.mark.slow
def test_ranks_joined_through_torchrun_variables(ranks):
    for rank, seen in enumerate(ranks):
        assert seen["info"] == [rank, WORLD, rank, "gloo", "cpu"]


def test_sharded_evaluation_counts_every_image_once(ranks):
    images, labels = scenes(**EVAL_DATA)
    loader = DataLoader(TensorDataset(images, labels), batch_size=3)
    expected = evaluate(eval_model(), loader, n_classes=N_CLASSES).confusion
    for seen in ranks:
        assert torch.equal(seen["confusion"], expected)
    # DistributedSampler repeats image 0 to make 2 shards of 4: that pixel count is too high
    padded = ranks[0]["padded"]
    assert padded.sum() == expected.sum() + (labels[0] != 255).sum()


def test_ddp_steps_match_one_process_on_the_whole_batch(ranks):
    config = recipe("paper", **STEP_CONFIG)
    model = net(10, batchnorm=False)  # rank 0's initial weights, which DDP gives everyone
    optimizer = make_optimizer(model, config)
    batches = step_batches(None)
    train_one_epoch(model, batches, optimizer, config=config, device="cpu", progress=False)
    start = net(10, batchnorm=False).state_dict()
    for key, want in model.state_dict().items():
        assert not torch.allclose(want, start[key])  # the steps did change the weights
        assert torch.equal(ranks[0]["stepped"][key], ranks[1]["stepped"][key]), key
        assert_close(ranks[0]["stepped"][key], want)


def test_fit_under_ddp(ranks):
    first, second = ranks
    # the same weights and BatchNorm statistics everywhere, though each rank started elsewhere
    for key, value in first["fit_state"].items():
        assert torch.equal(value, second["fit_state"][key]), key

    def same_everywhere(record):
        return {k: v for k, v in record.items() if k != "seconds"}  # wall time is per rank

    history = first["fit_history"]
    assert [same_everywhere(r) for r in history] == [
        same_everywhere(r) for r in second["fit_history"]
    ]
    # ceil(9 / 2) = 5 images per rank, padded; batches of 2: 3 steps per epoch
    assert [(r["epoch"], r["steps"], r["step"]) for r in history] == [(1, 3, 3), (2, 3, 6)]

    # rank 0 alone wrote the run's files, atomically (no temporary file left behind)
    folder = first["dir"] / "fit"
    names = sorted(p.name for p in folder.iterdir() if p.name != "run.tb")  # TensorBoard: optional
    assert names == ["run.best.pt", "run.metrics.jsonl", "run.pt"]
    model = net(0, batchnorm=True)
    saved = load_checkpoint(folder / "run.pt", model=model)
    assert saved["epoch"] == 2 and saved["history"] == history
    assert saved["world_size"] == 2
    for key, value in model.state_dict().items():
        assert torch.equal(value, first["fit_state"][key]), key

    # the metrics in the history are those of the saved model on the whole validation set
    loader = DataLoader(TensorDataset(*scenes(**FIT_VAL)), batch_size=5)
    scores = evaluate(model, loader, n_classes=N_CLASSES)
    assert history[-1]["pixel_acc"] == scores.pixel_acc
    assert history[-1]["mean_iu"] == scores.mean_iu


def test_a_run_resumes_only_under_as_many_processes_as_trained_it(ranks):
    # one process saved it (5 steps per epoch), two resume it (3 steps): refused on both ranks
    refused = "trained by one plain process (no torchrun) and this run is 2 processes (torchrun)"
    assert all(refused in seen["resumed_single"] for seen in ranks)
    assert load_checkpoint(ranks[0]["dir"] / "single" / "run.pt")["epoch"] == 2
    # two processes saved it, one resumes it
    with pytest.raises(ValueError, match=r"trained by 2 processes .*torchrun --nproc_per_node=2"):
        fit(net(0, batchnorm=True), scenes(**FIT_TRAIN), scenes(**FIT_VAL),
            config=recipe("fast", **LONGER), n_classes=N_CLASSES, device="cpu",
            checkpoint=ranks[0]["dir"] / "fit" / "run.pt", resume=True, progress=False)  # fmt: skip


# ----------------------------------------------------------------------------- a killed launcher

LAUNCHER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1]])  # the worker; its output goes to ours
time.sleep(120)
"""

WORKER = """
import os, time
from fcnlib.distributed import init_distributed
init_distributed("gloo")
print(os.getpid(), flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_stops_when_its_launcher_is_killed():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1",
           "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}  # fmt: skip
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, WORKER], stdout=subprocess.PIPE, env=env
    )
    worker = None
    try:
        worker = int(launcher.stdout.readline())  # the worker joined its group of one
        launcher.kill()  # as a killed torchrun: its workers used to train on
        launcher.wait()
        # the worker shares the launcher's stdout: it ends when the worker has exited too
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([launcher.stdout], [], [], 1)
            if ready and not launcher.stdout.read1():
                break
        else:
            pytest.fail(f"worker {worker} still runs 30 s after its launcher was killed")
    finally:
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        launcher.kill()
        launcher.wait()

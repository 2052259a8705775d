"""Data-parallel training on several GPUs (or CPU processes) with ``torchrun``.

Launch one process per GPU; :func:`fcnlib.train.fit` notices the process group and does the
rest::

    torchrun --standalone --nproc_per_node=2 -m fcnlib train --model fcn8s --epochs 8
    torchrun --standalone --nproc_per_node=2 -m fcnlib train --device cpu ...   # gloo on CPUs

``torchrun`` starts the processes and gives each one ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. :func:`init_distributed` reads them and joins the group
(NCCL when CUDA is available, else gloo); without them it does nothing, so the same script runs
as a single plain process too. What each of the ``N`` processes ("ranks") then does in ``fit``:

* **model**: its own replica on its own GPU (``cuda:LOCAL_RANK``), wrapped in
  :class:`~torch.nn.parallel.DistributedDataParallel`. DDP copies rank 0's weights to everyone
  at the start and averages the gradients in ``backward``, so after every ``optimizer.step()``
  all replicas hold the same weights.
* **training data**: a :class:`~torch.utils.data.distributed.DistributedSampler` gives each rank
  a different ``1/N`` of a shuffled epoch (``set_epoch`` reshuffles every epoch). The batch size
  is per process: one step sees ``N * batch_size`` images. Averaging the gradients of per-rank
  *mean* losses equals the gradient of the mean loss over all ``N * batch_size`` images when every
  rank has as many labelled pixels; with the summed loss ("heavy" recipe) the step is the sum
  over all images divided by ``N``.
* **evaluation**: each rank scores only its own shard of the validation set and the confusion
  matrices are summed (:meth:`fcnlib.metrics.ConfusionMatrix.all_reduce_`). The shard must not
  be padded: ``DistributedSampler`` makes every shard equally long by repeating the first images,
  which is harmless for SGD but would count those images twice in the metrics. :class:`ShardSampler`
  deals out the indices like cards (rank ``r`` gets ``r, r + N, r + 2N, ...``), so every image is
  counted exactly once.
* **output**: only rank 0 shows progress, holds the record's lock and writes checkpoints
  (atomically, as in the single-process case); the others wait at a barrier until the file is
  complete. The checkpoint
  path must be the same file for every rank (one machine, or a shared filesystem), since every
  rank resumes from it.

If one rank fails (say a nan loss), ``torchrun`` stops the others. If ``torchrun`` itself is
killed, the kernel stops its workers (on Linux; see :func:`init_distributed`), so no orphaned
worker goes on training and writing the checkpoint. A run's checkpoint records its number of
processes, and a resume under another number is refused: the steps per epoch depend on it.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
import sys
from collections.abc import Iterator, Sized
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

__all__ = [
    "DistInfo",
    "ShardSampler",
    "barrier",
    "broadcast_buffers",
    "cleanup",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "reduce_epoch_stats",
    "world_size",
    "wrap_ddp",
]

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the group; ``world_size == 1`` when running alone.

    ``backend`` is ``"nccl"``, ``"gloo"``, or None when there is no process group. ``device`` is
    ``cuda:LOCAL_RANK`` with NCCL, the CPU with gloo, and None when running alone (then pick the
    device as usual, e.g. :func:`fcnlib.config.pick_device`).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(
    backend: str | None = None, *, timeout: datetime.timedelta | None = None
) -> DistInfo:
    """Join the process group that ``torchrun`` set up; a no-op returning world size 1 without it.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; None picks NCCL when CUDA is available, else gloo.
            With NCCL each process uses GPU ``LOCAL_RANK``; with gloo the processes stay on CPU.
        timeout: how long a collective may wait for the other ranks before failing (torch's
            default otherwise).

    Calling it again in a process that is already in a group returns that group's info.

    On Linux the process asks the kernel for SIGTERM when its parent (the ``torchrun``
    launcher) dies: a killed launcher would otherwise leave its workers training and writing
    the checkpoint, out of anyone's reach.
    """
    if dist.is_available() and dist.is_initialized():
        return _current_info()
    if not all(name in os.environ for name in _TORCHRUN_ENV):
        return DistInfo()
    _stop_with_parent()
    if not dist.is_available():
        raise RuntimeError("torchrun started this process, but torch.distributed is not built in")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise RuntimeError("the nccl backend needs CUDA GPUs; use backend='gloo' on CPUs")
        torch.cuda.set_device(local_rank)  # before the group exists, so NCCL binds this GPU
    # env:// reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
    kwargs = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    return _current_info()


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _stop_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # refused (a sandbox): the worker runs on as before
    if os.getppid() != parent:  # the parent died before the request: no signal will come
        raise RuntimeError(
            f"the process that started this worker (pid {parent}, torchrun) has exited; "
            "stopping. Start the run again with torchrun"
        )


def world_size() -> int:
    """The number of processes training together: the group's size, 1 outside a group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _current_info() -> DistInfo:
    backend = dist.get_backend()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    on_gpu = backend == "nccl"
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        backend=backend,
        device=torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu"),
    )


def cleanup() -> None:
    """Leave the process group (a no-op when there is none). Call it once training is over."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """True for rank 0, and for a process that is not in a group: the one that prints and saves."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (a no-op outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _comm_device() -> torch.device:
    # NCCL only moves GPU tensors; gloo takes CPU ones
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class ShardSampler(Sampler[int]):
    """This rank's share of a dataset for evaluation: indices ``rank, rank + N, ...``, no padding.

    The shards of all ranks partition ``range(len(dataset))``: every index is in exactly one of
    them, so summing per-rank confusion matrices counts every image once. Shards differ in length
    by at most one, which is fine for evaluation (no collective runs per batch).

    >>> [list(ShardSampler(range(7), num_replicas=2, rank=r)) for r in (0, 1)]
    [[0, 2, 4, 6], [1, 3, 5]]
    """

    def __init__(
        self, dataset: Sized, *, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        if num_replicas is None:
            num_replicas = dist.get_world_size() if is_distributed() else 1
        if rank is None:
            rank = dist.get_rank() if is_distributed() else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas - 1}], got {rank}")
        self.indices = range(rank, len(dataset), num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def wrap_ddp(model: nn.Module, device: torch.device | str) -> DistributedDataParallel:
    """``model`` (already on ``device``) wrapped for data-parallel training.

    DDP broadcasts rank 0's parameters and buffers now, so every replica starts the same.
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index], output_device=index)
    return DistributedDataParallel(model)


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (e.g. BatchNorm running statistics) to every rank.

    DDP sends rank 0's buffers before each training forward, but each rank then updates them
    with its own batch; doing this before evaluation makes every rank score the weights that
    rank 0 saves. A no-op outside a process group.
    """
    if not is_distributed():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=src)


def reduce_epoch_stats(stats: dict[str, float]) -> dict[str, float]:
    """One epoch's :func:`fcnlib.train.train_one_epoch` numbers for the whole group.

    ``loss`` and ``first_loss`` (the first step's) become the means over ranks and
    ``images_per_s`` the total throughput; the rest (steps, seconds, lr) are already the same
    on every rank or are kept as rank-local values.
    """
    if not is_distributed():
        return dict(stats)
    first = stats.get("first_loss", 0.0)
    values = torch.tensor(
        [stats["loss"], stats["images_per_s"], first], dtype=torch.float64, device=_comm_device()
    )
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    loss, images_per_s, first = values.tolist()
    size = dist.get_world_size()
    out = {**stats, "loss": loss / size, "images_per_s": images_per_s}
    if "first_loss" in stats:
        out["first_loss"] = first / size
    return out

"""Process and hardware probes: what CPU runs this, on how many cores and threads.

One home for the questions the benchmarks, the pre-training record and the scene generator ask
the machine: the CPU's model name and its bf16 instructions (``/proc/cpuinfo``, read once), the
cores this process may use, and :func:`torch_threads`, which runs a block on a given number of
intra-op threads and gives the old number back.

>>> with torch_threads(1):
...     torch.get_num_threads()
1
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator

import torch

__all__ = ["cpu_cores", "cpu_description", "cpu_model", "torch_threads"]

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # the instructions that make CPU bf16 fast


@functools.cache
def _cpuinfo() -> tuple[str | None, frozenset[str]]:
    """The first processor's model name and flags in ``/proc/cpuinfo`` (None, {} elsewhere)."""
    name, flags = None, frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name is None:
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = frozenset(value.split())
                    break
    except OSError:
        pass
    return name, flags


def cpu_model() -> str:
    """The CPU's model name where the OS says it (``platform.processor()`` is often empty)."""
    return _cpuinfo()[0] or platform.processor() or platform.machine()


def cpu_description() -> str:
    """:func:`cpu_model` with the CPU's bf16 instructions (AVX-512-BF16, AMX), which decide
    whether CPU autocast can pay, e.g. ``'Intel(R) Xeon(R) ... (avx512_bf16, amx_bf16)'``."""
    bf16 = [flag for flag in _BF16_FLAGS if flag in _cpuinfo()[1]]
    return f"{cpu_model()} ({', '.join(bf16)})" if bf16 else cpu_model()


def cpu_cores() -> int:
    """The cores this process may run on (the affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` intra-op threads (``torch.set_num_threads``), then give the old
    number back. Nothing is set where the number is already ``n``, so nested blocks and loops
    inside one block do not reconfigure the thread pool again and again."""
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

"""Benchmarks that print numbers (never timed tests): ``python -m fcnlib.bench``.

``data``: how fast the lab-bench scenes are generated, single items versus batches versus a
``DataLoader``, next to how fast a small segmentation network trains on the same images, so
one can see that generating the data is never the bottleneck of training.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from fcnlib.data import ShapesDataset

__all__ = ["bench_data", "timeit"]


def timeit(fn: Callable[[], object], *, repeat: int = 3, warmup: int = 1) -> float:
    """Best wall-clock seconds of ``repeat`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _small_segmenter(n_classes: int) -> nn.Module:
    # A stride-8 encoder and bilinear upsampling: the scale of the lab-bench FCNs.
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2), *block(64, 128),
        nn.Conv2d(128, n_classes, 1),
    )  # fmt: skip


def bench_data(*, size: int = 128, batch_size: int = 32, n_batches: int = 8) -> dict[str, float]:
    """Scenes per second: one by one, batched, through a DataLoader; and training images/s."""
    ds = ShapesDataset("train", size=size, length=batch_size * n_batches)
    n = batch_size * n_batches
    results = {
        "single items": n / timeit(lambda: [ds[i] for i in range(n)], repeat=1),
        "batched": n / timeit(lambda: ds.materialize(batch_size=batch_size), repeat=2),
        "DataLoader (0 workers)": n
        / timeit(lambda: list(DataLoader(ds, batch_size=batch_size)), repeat=2),
    }
    images, labels = ds.batch(range(batch_size))
    model = _small_segmenter(ds.n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        logits = F.interpolate(model(images), size=images.shape[-2:], mode="bilinear")
        loss = F.cross_entropy(logits, labels, ignore_index=ds.ignore_index)
        opt.zero_grad()
        loss.backward()
        opt.step()

    results["training a small stride-8 segmenter"] = batch_size / timeit(step, repeat=3)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fcnlib.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", nargs="?", default="data", choices=["data"])
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    print(
        f"{platform.processor() or platform.machine()} | torch {torch.__version__} | "
        f"{torch.get_num_threads()} threads"
    )
    if args.what == "data":
        print(f"lab-bench scenes at {args.size}x{args.size}, batch {args.batch_size}:")
        for name, rate in bench_data(size=args.size, batch_size=args.batch_size).items():
            print(f"  {name:>38s}: {rate:8.0f} images/s")


if __name__ == "__main__":
    main()

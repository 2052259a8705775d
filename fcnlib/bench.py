"""Benchmarks that print numbers (never timed tests): ``python -m fcnlib bench WHAT``.

* ``data``: lab-bench scene generation (single items, batches, a ``DataLoader``) next to the
  training speed of a small segmenter on the same images: generation is never the bottleneck.
* ``dense``: one dense pass of a convolutionalized classifier versus running the classifier on
  every window (sliding window), on the same images: the paper's ~5x for AlexNet at 500 x 500.
* ``stitch``: shift-and-stitch (cost ~ f^2) versus one pass plus bilinear deconvolution.
* ``throughput``: FCN-8s (VGG16) forward + backward at 500 x 500 with fp32, channels_last and
  mixed precision (bf16 on CPUs that have it; AMP on a GPU, and ``torch.compile`` there).
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_dense(
    *, backbone: str = "alexnet", size: int = 500, device: str = "auto", repeat: int = 2
) -> dict[str, float]:
    """Seconds for one dense pass versus classifying every window at the net's stride."""
    from fcnlib.backbones import BACKBONES, build_classifier
    from fcnlib.config import pick_device
    from fcnlib.models import convolutionalize
    from fcnlib.patchwise import sliding_window_scores

    dev = pick_device(device)
    window = BACKBONES[backbone].native_size
    clf = build_classifier(backbone).to(dev).eval()
    dense_net = convolutionalize(clf).to(dev).eval()
    image = torch.rand(1, 3, size, size, device=dev)
    one = torch.rand(1, 3, window, window, device=dev)
    with torch.inference_mode():
        grid = dense_net(image).shape[-1]

        def dense() -> None:
            dense_net(image)
            _sync(dev)

        def sliding() -> None:
            sliding_window_scores(clf, image, window=window, stride=32, chunk=32)
            _sync(dev)

        def single() -> None:
            clf(one)
            _sync(dev)

        t_dense = timeit(dense, repeat=repeat)
        t_slide = timeit(sliding, repeat=repeat)
        t_one = timeit(single, repeat=repeat)
    return {"grid": grid, "windows": grid * grid, "dense_s": t_dense, "sliding_s": t_slide,
            "one_window_s": t_one, "speedup": t_slide / t_dense}  # fmt: skip


def bench_stitch(*, size: int = 128, factors=(2, 4, 8), device: str = "auto") -> list[dict]:
    """Shift-and-stitch versus one coarse pass + bilinear deconvolution, for several strides."""
    from fcnlib.config import pick_device
    from fcnlib.upsample import compare_costs

    dev = pick_device(device)
    rows = []
    for f in factors:
        # A stride-f net: log2(f) blocks of conv + 2x2 pool, then a 1x1 score layer.
        layers: list[nn.Module] = []
        cin = 3
        for _ in range(f.bit_length() - 1):
            layers += [nn.Conv2d(cin, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            cin = 32
        net = nn.Sequential(*layers, nn.Conv2d(cin, 7, 1)).to(dev).eval()
        x = torch.rand(1, 3, size, size, device=dev)
        rows.append({"f": f, **compare_costs(net, x, f)})
    return rows


def bench_throughput(
    *, size: int = 500, batch: int = 1, device: str = "auto", compile: bool | None = None
) -> dict[str, float]:
    """Images/s of FCN-8s (VGG16) forward + backward under several speed switches."""
    from fcnlib.config import pick_device
    from fcnlib.models import fcn8s

    dev = pick_device(device)
    amp_dtype = torch.bfloat16 if dev.type == "cpu" else torch.float16
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        amp_dtype = torch.bfloat16
    variants = [("fp32, align='caffe' (pad 100 + crop)", False, None),
                ("fp32", False, None), ("channels_last", True, None),
                (f"channels_last + autocast {str(amp_dtype)[6:]}", True, amp_dtype)]  # fmt: skip
    if compile if compile is not None else dev.type == "cuda":
        variants.append(("channels_last + autocast + torch.compile", True, amp_dtype))
    results = {}
    for name, cl, dtype in variants:
        fmt = torch.channels_last if cl else torch.contiguous_format
        align = "caffe" if "caffe" in name else "same"
        net = fcn8s("vgg16", n_classes=21, align=align).to(dev).to(memory_format=fmt)
        runner = torch.compile(net) if "compile" in name else net
        x = torch.rand(batch, 3, size, size, device=dev).to(memory_format=fmt)
        y = torch.randint(0, 21, (batch, size, size), device=dev)

        def step(runner=runner, x=x, y=y, dtype=dtype) -> None:
            with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(runner(x), y)
            loss.backward()
            _sync(dev)

        results[name] = batch / timeit(step, repeat=2, warmup=2 if "compile" in name else 1)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fcnlib bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "what", nargs="?", default="data", choices=["data", "dense", "stitch", "throughput", "all"]
    )
    parser.add_argument("--size", type=int, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=32, help="for 'data'")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    from fcnlib.config import describe_device

    print(
        f"{platform.processor() or platform.machine()} | {describe_device(args.device)} | "
        f"torch {torch.__version__}"
    )
    todo = ["data", "dense", "stitch", "throughput"] if args.what == "all" else [args.what]
    if "data" in todo:
        size = args.size or 128
        print(f"lab-bench scenes at {size}x{size}, batch {args.batch_size}:")
        for name, rate in bench_data(size=size, batch_size=args.batch_size).items():
            print(f"  {name:>38s}: {rate:8.0f} images/s")
    if "dense" in todo:
        for backbone, size in (("alexnet", args.size or 500), ("tiny_vgg", 416)):
            r = bench_dense(backbone=backbone, size=size, device=args.device)
            print(
                f"{backbone} at {size}x{size}: one dense pass {1000 * r['dense_s']:.0f} ms for "
                f"a {r['grid']}x{r['grid']} grid; sliding window {1000 * r['sliding_s']:.0f} "
                f"ms ({r['windows']} windows, one window {1000 * r['one_window_s']:.1f} ms): "
                f"{r['speedup']:.1f}x faster dense"
            )
    if "stitch" in todo:
        print("shift-and-stitch versus coarse pass + bilinear deconvolution:")
        for r in bench_stitch(size=args.size or 128, device=args.device):
            print(f"  f={r['f']}: FLOPs x{r['flop_ratio']:.1f}, time x{r['time_ratio']:.1f}")
    if "throughput" in todo:
        size = args.size or 500
        print(f"FCN-8s (VGG16) forward + backward at {size}x{size}, batch 1:")
        for name, rate in bench_throughput(size=size, device=args.device).items():
            print(f"  {name:>40s}: {rate:6.2f} images/s")


if __name__ == "__main__":
    main()

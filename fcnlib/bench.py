"""Benchmarks that print numbers (never timed tests): ``python -m fcnlib bench WHAT``.

* ``data``: lab-bench scene generation (single items, batches, a ``DataLoader``) next to the
  training speed of a small segmenter on the same images: generation is never the bottleneck.
* ``dense``: one dense pass of a convolutionalized classifier versus running the classifier on
  every window (sliding window), on the same images: the paper's ~5x for AlexNet at 500 x 500.
* ``stitch``: shift-and-stitch (cost ~ f^2) versus one pass plus bilinear deconvolution.
* ``throughput``: FCN-8s (VGG16, random weights) at 500 x 500, batch 1 (``--batch-size``,
  ``--backbone``, ``--size``, ``--mode``), under several speed switches: fp32 with
  ``align="caffe"`` (pad 100 + crop), fp32, channels_last, channels_last + autocast (bf16 on a
  CPU; bf16 or fp16 AMP on a GPU) and, on CUDA (or with ``--compile``), + ``torch.compile``.
  Two columns of images/s: *train* times forward + cross-entropy + backward + zero grads in
  ``model.train()`` (no optimizer step); *infer* times the forward pass alone, ``model.eval()``
  under ``torch.inference_mode()``. On CUDA (``cudnn.benchmark`` on, synchronized timing) two
  more columns give each variant's peak ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from fcnlib.data import ShapesDataset

__all__ = ["bench_data", "bench_dense", "bench_stitch", "bench_throughput", "timeit"]


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


def _cpu_name() -> str:
    """The CPU's model name where the OS says it (``platform.processor()`` is often empty),
    with its bf16 instructions (AVX-512-BF16, AMX), which decide whether CPU autocast pays."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    bf16 = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return f"{name} ({', '.join(bf16)})" if bf16 else name


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_throughput(
    *,
    backbone: str = "vgg16",
    size: int = 500,
    batch_size: int = 1,
    device: str = "auto",
    compile: bool | None = None,
    mode: str = "both",
    n_classes: int = 21,
    repeat: int = 2,
) -> dict[str, dict[str, float | None]]:
    """Training and inference images/s of FCN-8s under several speed switches.

    Every variant builds a fresh FCN-8s with random weights (``pretrained=False``: no download,
    no lab pre-training) and frees it before the next one is built. The variants: fp32 with
    ``align="caffe"`` (conv1_1 padded by 100, then cropped), fp32 padding-free, channels_last,
    channels_last + autocast (bf16 on a CPU; bf16 on a GPU of compute capability 8.0 or newer,
    else fp16: a T4 only emulates bf16), and, on CUDA or when ``compile=True``, the latter under
    ``torch.compile``.

    * ``"train"``: forward + cross-entropy + backward + zero grads (``set_to_none``), in
      ``model.train()``; no optimizer step, so the numbers compare with earlier runs.
    * ``"infer"``: forward only, ``model.eval()`` under ``torch.inference_mode()``.

    Each is the best of ``repeat`` timed calls after warm-up calls (1, or 3 for
    ``torch.compile``, which compiles again on the switch to eval/inference mode). On CUDA the
    clock is read after ``torch.cuda.synchronize``, ``torch.backends.cudnn.benchmark`` is on
    while timing (restored afterwards), and the peak of ``torch.cuda.max_memory_allocated``
    (weights and inputs included; reset before each variant and mode) is reported too.

    Args:
        backbone: a key of :data:`fcnlib.backbones.BACKBONES` (``"tiny_vgg"`` for tests).
        size: image side in pixels.
        batch_size: images per call, in both modes.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        compile: add the ``torch.compile`` variant; ``None``: only on CUDA.
        mode: ``"train"``, ``"infer"`` or ``"both"``.
        n_classes: output classes of the net and the loss.
        repeat: timed calls per number (the best counts).

    Returns:
        variant name -> ``{"train": images/s, "infer": images/s}`` (``None`` for a mode not
        run, or that ran out of GPU memory: then ``"train_error"``/``"infer_error"`` says so);
        on CUDA also ``"train_peak_bytes"`` and ``"infer_peak_bytes"``.
    """
    from fcnlib.config import pick_device
    from fcnlib.models import fcn8s
    from fcnlib.train import _cuda_has_native_bf16

    if mode not in ("train", "infer", "both"):
        raise ValueError(f"mode must be 'train', 'infer' or 'both', got {mode!r}")
    modes = ["train", "infer"] if mode == "both" else [mode]
    dev = pick_device(device)
    cuda = dev.type == "cuda"
    amp_dtype = torch.bfloat16 if dev.type == "cpu" else torch.float16
    if cuda and _cuda_has_native_bf16(dev):  # capability >= 8.0; a T4 only emulates bf16
        amp_dtype = torch.bfloat16
    variants = [("fp32, align='caffe' (pad 100 + crop)", False, None),
                ("fp32", False, None), ("channels_last", True, None),
                (f"channels_last + autocast {str(amp_dtype)[6:]}", True, amp_dtype)]  # fmt: skip
    if compile if compile is not None else cuda:
        variants.append(("channels_last + autocast + torch.compile", True, amp_dtype))
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if cuda:
        torch.backends.cudnn.benchmark = True
    results: dict[str, dict[str, float | None]] = {}
    try:
        for name, cl, dtype in variants:
            results[name] = row = {"train": None, "infer": None}
            fmt = torch.channels_last if cl else torch.contiguous_format
            align = "caffe" if "caffe" in name else "same"
            compiled = "compile" in name
            net = fcn8s(backbone, n_classes=n_classes, align=align, pretrained=False,
                        progress=False).to(dev).to(memory_format=fmt)  # fmt: skip
            runner = torch.compile(net) if compiled else net
            x = torch.rand(batch_size, 3, size, size, device=dev).to(memory_format=fmt)
            y = torch.randint(0, n_classes, (batch_size, size, size), device=dev)

            def autocast(dtype=dtype):
                return torch.autocast(
                    dev.type, dtype=dtype or torch.float32, enabled=dtype is not None
                )

            def train_step(runner=runner, net=net, x=x, y=y) -> None:
                with autocast():
                    loss = F.cross_entropy(runner(x), y)
                loss.backward()
                net.zero_grad(set_to_none=True)
                _sync(dev)

            def infer_step(runner=runner, x=x) -> None:
                with torch.inference_mode(), autocast():
                    runner(x)
                _sync(dev)

            for m in modes:
                net.train(m == "train")
                if cuda:
                    _sync(dev)
                    torch.cuda.reset_peak_memory_stats(dev)
                try:
                    seconds = timeit(
                        train_step if m == "train" else infer_step,
                        repeat=repeat,
                        warmup=3 if compiled else 1,
                    )
                except torch.cuda.OutOfMemoryError:
                    row[f"{m}_error"] = "out of memory"
                else:
                    row[m] = batch_size / seconds
                net.zero_grad(set_to_none=True)
                _free(dev)
                if cuda:
                    row[f"{m}_peak_bytes"] = torch.cuda.max_memory_allocated(dev)
            del net, runner, x, y, train_step, infer_step
            if compiled:
                torch._dynamo.reset()
            _free(dev)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
    return results


def _print_throughput(results: dict, *, cuda: bool) -> None:
    def rate(row: dict, m: str) -> str:
        if row[m] is not None:
            return f"{row[m]:11.2f}"
        return f"{'OOM' if row.get(f'{m}_error') else '-':>11s}"

    def peak(row: dict, m: str) -> str:
        b = row.get(f"{m}_peak_bytes")
        return f"{'-':>11s}" if b is None or row[m] is None else f"{b / 2**30:7.2f} GiB"

    head = f"  {'variant':40s}  {'train img/s':>11s}  {'infer img/s':>11s}"
    if cuda:
        head += f"  {'train peak':>11s}  {'infer peak':>11s}"
    print(head)
    for name, row in results.items():
        line = f"  {name:40s}  {rate(row, 'train')}  {rate(row, 'infer')}"
        if cuda:
            line += f"  {peak(row, 'train')}  {peak(row, 'infer')}"
        print(line)


def main(argv: list[str] | None = None) -> None:
    from fcnlib.backbones import BACKBONES

    parser = argparse.ArgumentParser(
        prog="python -m fcnlib bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "what", nargs="?", default="data", choices=["data", "dense", "stitch", "throughput", "all"]
    )
    parser.add_argument("--size", type=int, help="image side in pixels")
    parser.add_argument(
        "--batch-size", type=int, help="for 'data' (default 32) and 'throughput' (default 1)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--backbone", default="vgg16", choices=sorted(BACKBONES), help="for 'throughput'"
    )
    parser.add_argument(
        "--mode", default="both", choices=["train", "infer", "both"], help="for 'throughput'"
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="for 'throughput': add the torch.compile variant (default: on CUDA only)",
    )
    args = parser.parse_args(argv)
    from fcnlib.config import describe_device, pick_device

    dev = pick_device(args.device)
    cuda = dev.type == "cuda"
    print(
        f"{_cpu_name()} | {describe_device(dev)} | torch {torch.__version__}"
        + (f" | CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if cuda else "")
    )
    todo = ["data", "dense", "stitch", "throughput"] if args.what == "all" else [args.what]
    if "data" in todo:
        size, batch_size = args.size or 128, args.batch_size or 32
        print(f"lab-bench scenes at {size}x{size}, batch {batch_size}:")
        for name, rate in bench_data(size=size, batch_size=batch_size).items():
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
        size, batch_size, repeat = args.size or 500, args.batch_size or 1, 2
        print(
            f"FCN-8s ({args.backbone}, random weights, 21 classes) at {size}x{size}, "
            f"batch {batch_size}:\n"
            f"  images/s = batch / best of {repeat} timed calls, after 1 warm-up call "
            "(3 for torch.compile)\n"
            "  train = forward + cross-entropy + backward + zero grads (model.train(); "
            "no optimizer step)\n"
            "  infer = forward only (model.eval(), torch.inference_mode())"
        )
        if cuda:
            print(
                "  torch.backends.cudnn.benchmark = True while timing; synchronized before each "
                "clock read;\n  peak = torch.cuda.max_memory_allocated (weights and inputs "
                "included), reset per variant and column"
            )
        results = bench_throughput(
            backbone=args.backbone,
            size=size,
            batch_size=batch_size,
            device=args.device,
            compile=args.compile,
            mode=args.mode,
            repeat=repeat,
        )
        _print_throughput(results, cuda=cuda)


if __name__ == "__main__":
    main()

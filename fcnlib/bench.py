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
* ``pipeline``: where the time of a full-scale training run goes, on SBD-format images written
  by :func:`fcnlib.data.fake.write_fake_sbd` (``--root DIR`` keeps them, or reads SBD found there):
  the DataLoader alone for several ``--workers`` counts (items handed over as uint8 and
  converted on the device, as ``train --data voc`` does; ``--float-handover`` for float32
  images and int64 labels), the CPU cost of one item, the training
  step alone on a batch already on the device, the real loop (``train_one_epoch`` over the
  DataLoader) and its ratio to the step, then the official staged schedule's wall time at those
  rates; on CUDA also the step's peak memory, first steps and steady state. Paper sizes on a
  GPU (375 x 500 images, crop 500, VGG16); small ones on a CPU (120 x 160, crop 160,
  ``tiny_vgg``). Each timed window holds as many steps as take about half a second (1 to 50),
  so a run stays short on a slow or busy machine (under a minute on a busy 2-core CPU).
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from fcnlib.data import ShapesDataset
from fcnlib.system import cpu_cores, cpu_description, torch_threads

__all__ = [
    "OFFICIAL_SCHEDULE",
    "bench_data",
    "bench_dense",
    "bench_pipeline",
    "bench_stitch",
    "bench_throughput",
    "timeit",
]

# The verbose pipeline report wraps its lines to the book's text column.
REPORT_WIDTH = 76


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
    from fcnlib.precision import cuda_has_native_bf16

    if mode not in ("train", "infer", "both"):
        raise ValueError(f"mode must be 'train', 'infer' or 'both', got {mode!r}")
    modes = ["train", "infer"] if mode == "both" else [mode]
    dev = pick_device(device)
    cuda = dev.type == "cuda"
    amp_dtype = torch.bfloat16 if dev.type == "cpu" else torch.float16
    if cuda and cuda_has_native_bf16(dev):  # capability >= 8.0; a T4 only emulates bf16
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


def throughput_table(results: dict, *, cuda: bool) -> str:
    """:func:`bench_throughput`'s results as the lines ``python -m fcnlib bench throughput``
    prints: images/s per variant for training and inference (and peak memory on CUDA)."""

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
    lines = [head]
    for name, row in results.items():
        line = f"  {name:40s}  {rate(row, 'train')}  {rate(row, 'infer')}"
        if cuda:
            line += f"  {peak(row, 'train')}  {peak(row, 'infer')}"
        lines.append(line)
    return "\n".join(lines)


# The official heavy recipe (the paper's authors' solve.py for voc-fcn32s, -16s and -8s):
# each stage runs ``solver.step(4000)`` 25 times, 100,000 iterations of one image each.
OFFICIAL_SCHEDULE = {
    "stages": ("FCN-32s", "FCN-16s", "FCN-8s"),
    "iterations_per_stage": 100_000,
    "batch_size": 1,
}


_WINDOW_S = 0.5  # seconds of steps per timed window when bench_pipeline chooses the steps


def _default_workers(cores: int) -> tuple[int, ...]:
    """0, then 2, 4, 8, ... up to ``cores``, and ``cores`` itself: (0, 2) on two cores."""
    counts, w = [0], 2
    while w <= cores:
        counts.append(w)
        w *= 2
    if cores > 1 and counts[-1] != cores:
        counts.append(cores)
    return tuple(counts)


def _pipeline_defaults(device: torch.device) -> dict:
    if device.type == "cuda":  # the paper's sizes
        return {"images": 128, "size": 500, "crop": 500, "backbone": "vgg16",
                "channels_last": True}  # fmt: skip
    # a CPU: small enough that the whole benchmark runs in seconds
    return {"images": 64, "size": 160, "crop": 160, "backbone": "tiny_vgg",
            "channels_last": False}  # fmt: skip


def _image_size(size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W): a pair as given; one number is the width, the height 3/4 of it as most VOC
    images (500: 375 x 500)."""
    if isinstance(size, int):
        h, w = round(0.75 * size), size
    else:
        h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _median_rate(windows: list[float]) -> float:
    return float(statistics.median(windows))


def _say(*parts: object) -> None:
    """print, with lines longer than a book's column (76 characters) wrapped, indented."""
    for line in " ".join(map(str, parts)).split("\n"):
        indent = " " * (len(line) - len(line.lstrip()))
        print(
            textwrap.fill(
                line,
                REPORT_WIDTH,
                subsequent_indent=indent + "  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
        )


def bench_pipeline(
    *,
    root: str | os.PathLike | None = None,
    images: int | None = None,
    size: int | Sequence[int] | None = None,
    crop: int | None = None,
    batch_size: int = 1,
    workers: Sequence[int] | None = None,
    steps: int | None = None,
    windows: int = 3,
    device: str = "auto",
    backbone: str | None = None,
    amp: str = "auto",
    channels_last: bool | None = None,
    n_classes: int = 21,
    compact: bool = True,
    verbose: bool = False,
) -> dict:
    """Where the time of a full-scale training run goes: loader, step, the two together.

    SBD-format training images (JPEG + ``.mat`` labels, :func:`fcnlib.data.fake.write_fake_sbd`)
    are read through :class:`fcnlib.data.voc.SBDSegmentation` with the paper's training
    transform (:func:`fcnlib.data.transforms.train_transform` as
    :func:`fcnlib.data.voc.paper_datasets` sets it: random mirror and crop, no rescaling). The net
    is FCN-8s with random weights, trained with the official heavy recipe's optimizer
    (:func:`fcnlib.train.stage_recipe`: SGD, momentum 0.99, summed loss) and the given ``amp`` /
    ``channels_last``, set up as :func:`fcnlib.train.fit` does (``prepare_model``,
    ``make_optimizer``, ``make_grad_scaler``). Every rate is images/s
    in the steady state: the median of ``windows`` timed windows of ``steps`` batches each,
    after a warm-up (a window for the step alone; a window plus two batches per worker for the
    loader alone, whose windows hold at least 10 batches; two batches per worker, at least
    two, for the loop, whose model is warm by then). On CUDA the clock is read after
    ``torch.cuda.synchronize``.

    * ``loader``: the DataLoader alone, for each worker count, built by ``fcnlib.train.make_loader``
      as ``fit`` builds it (``pin_memory`` on CUDA); its batches are only fetched. One
      iterator lives through warm-up and windows (a sampler that repeats the images), so no
      worker restarts inside the timing.
    * ``item_ms``: the median time of ``dataset[i]`` in this process on one thread: the CPU cost
      of one training image; ``1000 / item_ms`` images/s is what one core can feed.
    * ``step``: the training step alone (forward, loss, backward, optimizer step: the body of
      :func:`fcnlib.train.train_one_epoch`, which runs it) on one fixed batch already on the
      device.
    * ``loop``: ``train_one_epoch`` over the DataLoader, for each worker count;
      ``loop_over_step`` is its ratio to ``step`` (0.93: the loop waits 7 % of the time).
    * ``projection``: hours of :data:`OFFICIAL_SCHEDULE` (3 stages x 100,000 iterations at
      batch 1 = 300,000 images) at the best loop rate and at the step-alone rate, assuming the
      rate measured here (this batch size and crop) holds for the schedule.
    * ``memory`` (CUDA only): ``torch.cuda.max_memory_allocated`` of the step (weights,
      gradients, optimizer state and the batch included) over the warm-up window, whose first
      step includes cuDNN's autotuning workspace (``cudnn.benchmark`` tries algorithms with
      large scratch buffers), and over the timed windows (reset after the warm-up).

    Args:
        root: a directory holding SBD (real or fake: used as found, nothing written over it);
            if it holds none, the fake images are written there and kept. ``None``: a fresh
            temporary directory, removed at the end.
        images: how many fake training images to write (default 128 on CUDA, else 64).
        size: the fake images' (H, W), or their width with the height 3/4 of it (default 500,
            i.e. 375 x 500, on CUDA; else 160, i.e. 120 x 160).
        crop: the random training crop's side (default 500 on CUDA, else 160): as the paper's
            500, at least the images' sides, so every image is kept whole and padded.
        batch_size: images per step (the official recipe's is 1).
        workers: DataLoader worker counts to measure (default: 0, then 2, 4, 8, ... up to the
            CPU cores this process may use).
        steps: batches per timed window; ``None``: as many as take about half a second in the
            step alone (1 to 50), timed after one warm-up step, so a slow or busy machine
            still finishes soon.
        windows: timed windows per rate (the median counts).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        backbone: a key of :data:`fcnlib.backbones.BACKBONES` (default ``"vgg16"`` on CUDA,
            else ``"tiny_vgg"``).
        amp: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"off"`` (:func:`fcnlib.precision.resolve_amp`).
        channels_last: NHWC layout (default: on CUDA only).
        n_classes: output classes (VOC's 21).
        compact: workers hand over uint8 images and labels, converted to float32 / int64 on
            the device (:func:`fcnlib.train.batch_to`), as ``python -m fcnlib train --data
            voc`` does; ``False``: float32 images and int64 labels, converted in the workers.
        verbose: print one line per measurement as it is made.

    Returns:
        ``{"machine", "data", "config", "loader", "loader_windows", "item_ms", "step",
        "step_windows", "loop", "loop_windows", "loop_over_step", "projection", "memory"}``;
        ``loader``, ``loop`` and ``loop_over_step`` map a worker count to a number,
        ``memory`` is ``None`` off CUDA.
    """
    from fcnlib.config import describe_device, pick_device
    from fcnlib.precision import resolve_amp
    from fcnlib.train import stage_recipe

    dev = pick_device(device)
    defaults = _pipeline_defaults(dev)
    cores = cpu_cores()
    images = defaults["images"] if images is None else int(images)
    h, w = _image_size(defaults["size"] if size is None else size)
    crop = defaults["crop"] if crop is None else int(crop)
    steps = None if steps is None else int(steps)
    backbone = backbone or defaults["backbone"]
    channels_last = defaults["channels_last"] if channels_last is None else bool(channels_last)
    workers = _default_workers(cores) if workers is None else tuple(int(n) for n in workers)
    counts = {"images": images, "crop": crop, "batch_size": batch_size, "windows": windows}
    for name, value in (*counts.items(), ("steps", 1 if steps is None else steps)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not workers or min(workers) < 0:
        raise ValueError(f"workers must be one or more counts >= 0, got {workers!r}")
    say = _say if verbose else (lambda *_: None)
    base = stage_recipe("heavy", backbone=backbone, stride=8, staged=True, batch_size=batch_size,
                        amp=amp, channels_last=channels_last)  # fmt: skip
    amp_dtype = resolve_amp(dev, amp)
    precision = "float32" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")
    machine = {"cpu": cpu_description(), "cores": cores, "device": describe_device(dev),
               "torch": torch.__version__}  # fmt: skip
    config = {
        "backbone": backbone, "model": "fcn8s", "n_classes": n_classes,
        "batch_size": batch_size, "crop": crop, "steps": steps, "windows": windows, "amp": amp,
        "precision": precision, "channels_last": channels_last, "workers": list(workers),
        "optimizer": base.optimizer, "momentum": base.momentum,
        "loss_reduction": base.loss_reduction, "compact": bool(compact),
    }  # fmt: skip
    out: dict = {"machine": machine, "config": config, "memory": None}
    temporary = root is None
    where = Path(tempfile.mkdtemp(prefix="fcnlib-pipeline-") if temporary else root)
    cudnn_benchmark = torch.backends.cudnn.benchmark
    try:
        ds, out["data"] = _pipeline_data(where, images, (h, w), crop, compact, temporary)
        say(_data_line(out["data"], crop, batch_size, compact))
        reduction = "summed" if base.loss_reduction == "sum" else "mean"
        say(
            f"FCN-8s ({backbone}, random weights, {n_classes} classes), heavy recipe's optimizer "
            f"(SGD, momentum {base.momentum}, {reduction} loss); amp {amp!r} -> "
            f"{precision}, channels_last {'on' if channels_last else 'off'}; "
            f"{cores} CPU cores available"
        )
        bench = _Bench(ds, base, dev, batch_size, windows, say)
        out["item_ms"] = _item_ms(ds, say)
        steps = _bench_step(bench, out, backbone=backbone, n_classes=n_classes, steps=steps)
        out["loader"], out["loader_windows"], out["config"]["loader_batches"] = _bench_loader(
            bench, workers, steps
        )
        _bench_loop(bench, out, workers, steps)
        out["projection"] = _projection(out["loop"], out["step"], batch_size, crop, say)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        if temporary:
            shutil.rmtree(where, ignore_errors=True)
    return out


class _Bench:
    """What the measurements of :func:`bench_pipeline` share: the data, the recipe, the device,
    and, once :func:`_bench_step` has built the net, ``train(batches)``."""

    def __init__(self, ds, base, dev: torch.device, batch_size: int, windows: int, say) -> None:
        self.ds, self.base, self.dev = ds, base, dev
        self.batch_size, self.windows, self.say = batch_size, windows, say
        self.train: Callable[..., None] = lambda batches: None

    def loader(self, n_workers: int, n_batches: int, seed: int) -> DataLoader:
        """A DataLoader as fit builds it, over ``n_batches`` random batches of the images."""
        from fcnlib.train import make_loader

        config = self.base.replace(num_workers=n_workers)
        gen = torch.Generator().manual_seed(seed)
        sampler = RandomSampler(self.ds, num_samples=n_batches * self.batch_size, generator=gen)
        return make_loader(self.ds, config, self.dev, seed=seed, shuffle=True, sampler=sampler)

    def rates(self, run: Callable[[], object], batches: int, *, sync: bool = True) -> list[float]:
        """images/s of ``run()`` (``batches`` batches) in each of the timed windows."""
        rates = []
        for _ in range(self.windows):
            t0 = time.perf_counter()
            run()
            if sync:
                _sync(self.dev)
            rates.append(batches * self.batch_size / (time.perf_counter() - t0))
        return rates


def _pipeline_data(
    where: Path, images: int, size: tuple[int, int], crop: int, compact: bool, temporary: bool
) -> tuple[Dataset, dict]:
    """SBD's training set under ``where`` (fake images written there if it holds none), with
    the paper's training transform; and what :func:`bench_pipeline` reports of it."""
    from fcnlib.data import fake, voc

    t0 = time.perf_counter()
    try:
        plain = voc.SBDSegmentation("train", root=where)
        written = False
    except voc.DatasetNotFoundError:
        fake.write_fake_sbd(where, n_train=images, n_val=0, size=size)
        plain, written = voc.SBDSegmentation("train", root=where), True
    h, w = plain[0][0].shape[-2:]  # as found (SBD images differ: the first one's)
    transforms = voc.train_transform(crop, None, mirror=True, compact=compact)
    ds = voc.SBDSegmentation("train", root=where, transforms=transforms)
    seconds = time.perf_counter() - t0 if written else 0.0
    return ds, {"root": str(where), "written": written, "removed": temporary, "images": len(ds),
                "size": (int(h), int(w)), "seconds_to_write": seconds}  # fmt: skip


def _data_line(data: dict, crop: int, batch_size: int, compact: bool) -> str:
    h, w = data["size"]
    where = data["root"]
    found = (
        f"written to {where} in {data['seconds_to_write']:.1f} s"
        if data["written"]
        else f"found in {where}"
    )
    handed = (
        "uint8 images and labels, converted on the device"
        if compact
        else "float32 images and int64 labels"
    )
    return (
        f"{data['images']} SBD-format training images of {h} x {w} {found}"
        + ("; removed at the end" if data["removed"] else "")
        + f"; crop {crop}, random mirror; batch {batch_size}; handed over as {handed}"
    )


def _item_ms(ds: Dataset, say: Callable[..., None]) -> float:
    """The CPU cost of one item, in this process, on one thread: the median, in ms."""
    with torch_threads(1):
        n_items = min(len(ds), 32)
        ds[0]
        times = []
        for i in range(n_items):
            t0 = time.perf_counter()
            ds[i]
            times.append(time.perf_counter() - t0)
    item_ms = 1000 * statistics.median(times)
    say(
        f"one item (dataset[i] in this process on 1 thread, median of {n_items}): "
        f"{item_ms:.2f} ms of CPU, so one core feeds {1000 / item_ms:.0f} images/s"
    )
    return item_ms


def _bench_step(
    bench: _Bench, out: dict, *, backbone: str, n_classes: int, steps: int | None
) -> int:
    """The step alone, on one batch already on the device: ``out["step"]``,
    ``out["step_windows"]`` and on CUDA ``out["memory"]``. Sets ``bench.train``; returns the
    steps per timed window (chosen here when ``steps`` is None)."""
    from fcnlib.models import fcn
    from fcnlib.precision import make_grad_scaler
    from fcnlib.train import batch_to, collate, make_optimizer, prepare_model, train_one_epoch

    dev, base, ds, say = bench.dev, bench.base, bench.ds, bench.say
    cuda = dev.type == "cuda"
    model = fcn(backbone, n_classes=n_classes, stride=8, pretrained=False, progress=False)
    runner = prepare_model(model, config=base, device=dev)
    optimizer = make_optimizer(model, base)
    scaler = make_grad_scaler(dev, base.amp)
    x, y = collate([ds[i % len(ds)] for i in range(bench.batch_size)])
    x, y = batch_to(x, y, dev, channels_last=base.channels_last)

    def train(batches) -> None:
        train_one_epoch(
            runner, batches, optimizer, config=base, device=dev, scaler=scaler, progress=False
        )

    bench.train = train
    if cuda:
        _sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    train([(x, y)])  # cuDNN autotunes on the first step
    _sync(dev)
    t0 = time.perf_counter()
    train([(x, y)])
    _sync(dev)
    one_step = time.perf_counter() - t0
    chosen = steps is None
    if chosen:  # a timed window of about WINDOW_S seconds, 1 to 50 steps
        steps = max(1, min(50, math.ceil(_WINDOW_S / max(one_step, 1e-6))))
    out["config"]["steps"] = steps
    say(
        f"images/s: median of {bench.windows} timed windows of {steps} batch"
        + ("es" if steps > 1 else "")
        + (f" (about {_WINDOW_S} s of steps each)" if chosen else "")
        + ", after a warm-up"
        + (" (clock read after torch.cuda.synchronize)" if cuda else "")
    )
    train([(x, y)] * max(0, steps - 2))  # the rest of a warm-up window
    _sync(dev)
    if cuda:
        first_peak = torch.cuda.max_memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    rates = bench.rates(lambda: train([(x, y)] * steps), steps)
    out["step_windows"], out["step"] = rates, _median_rate(rates)
    say(
        f"step alone (forward + loss + backward + SGD step on one batch already on "
        f"{dev.type}): {out['step']:.1f} images/s"
    )
    if cuda:
        steady_peak = torch.cuda.max_memory_allocated(dev)
        out["memory"] = {"first_peak_bytes": first_peak, "steady_peak_bytes": steady_peak}
        say(
            f"step memory (max_memory_allocated: weights, gradients, optimizer state, "
            f"batch):\n  {first_peak / 2**30:8.2f} GiB first steps (the warm-up window; "
            f"its first step holds cuDNN's autotuning workspace: cudnn.benchmark tries\n"
            f"{'':14s}algorithms with large scratch buffers, freed afterwards)\n"
            f"  {steady_peak / 2**30:8.2f} GiB steady state (peak reset after the warm-up,"
            f" then the timed windows)"
        )
    return steps


def _bench_loader(bench: _Bench, workers: Sequence[int], steps: int) -> tuple[dict, dict, int]:
    """The loader alone, batches fetched and nothing else: ``(rates, windows, batches per
    window)``; one iterator lives through warm-up and windows, so no worker restarts inside."""
    loader, windows = {}, {}
    # batches are cheap next to steps: windows of at least 10, so none is one queue pop
    batches = max(steps, 10)
    bench.say(
        f"loader alone (a DataLoader as fit builds it, pin_memory "
        f"{'on' if bench.dev.type == 'cuda' else 'off'}; batches fetched, nothing else; "
        f"windows of {batches} batches):"
    )
    for n_workers in workers:
        warm = batches + 2 * n_workers  # two batches in flight per worker (prefetch)
        it = iter(bench.loader(n_workers, warm + bench.windows * batches, seed=n_workers))
        for _ in range(warm):
            next(it)
        rates = bench.rates(lambda it=it: [next(it) for _ in range(batches)], batches, sync=False)
        del it  # shuts the workers down
        windows[n_workers] = rates
        loader[n_workers] = rate = _median_rate(rates)
        bench.say(f"  {n_workers:2d} workers: {rate:8.1f} images/s")
    return loader, windows, batches


def _bench_loop(bench: _Bench, out: dict, workers: Sequence[int], steps: int) -> None:
    """The two together, train_one_epoch over the DataLoader: ``out["loop"]``,
    ``out["loop_windows"]`` and ``out["loop_over_step"]``, per worker count."""
    out["loop"], out["loop_windows"], out["loop_over_step"] = {}, {}, {}
    bench.say("loop (train_one_epoch over the DataLoader):")
    for n_workers in workers:
        warm = max(2, 2 * n_workers)  # the model is warm; the workers start and fill up
        it = iter(bench.loader(n_workers, warm + bench.windows * steps, seed=100 + n_workers))
        bench.train(islice(it, warm))
        _sync(bench.dev)
        rates = bench.rates(lambda it=it: bench.train(islice(it, steps)), steps)
        del it
        out["loop_windows"][n_workers] = rates
        out["loop"][n_workers] = rate = _median_rate(rates)
        out["loop_over_step"][n_workers] = ratio = rate / out["step"]
        waits = (
            f"the loop waits {100 * (1 - ratio):.0f}% of the time"
            if ratio < 1
            else "no wait measurable"
        )
        bench.say(
            f"  {n_workers:2d} workers: {rate:8.1f} images/s, loop / step = {ratio:.2f}: " + waits
        )


def _projection(
    loop: dict, step_rate: float, batch_size: int, crop: int, say: Callable[..., None]
) -> dict:
    """Hours of the official schedule at the best loop rate and at the step-alone rate."""
    from fcnlib.data import voc

    best = max(loop, key=lambda n: (loop[n], -n))
    n_images = (
        len(OFFICIAL_SCHEDULE["stages"])
        * OFFICIAL_SCHEDULE["iterations_per_stage"]
        * OFFICIAL_SCHEDULE["batch_size"]
    )
    sbd_train = voc.SPLIT_SIZES["sbd"]["train"]
    proj = {
        **OFFICIAL_SCHEDULE,
        "images": n_images,
        "sbd_train": sbd_train,
        "epochs": n_images / sbd_train,
        "loop_workers": best,
        "loop_rate": loop[best],
        "step_rate": step_rate,
        "hours_loop": n_images / loop[best] / 3600,
        "hours_step": n_images / step_rate / 3600,
    }
    say(
        f"projection, the official heavy recipe's schedule (the authors' solve.py): "
        f"{' -> '.join(OFFICIAL_SCHEDULE['stages'])},\n  100,000 iterations per stage at "
        f"batch 1 = {n_images:,} images ({proj['epochs']:.1f} passes over SBD train's "
        f"{sbd_train:,}),\n  at the rates above (batch {batch_size}, crop {crop}):"
    )
    say(
        f"  {proj['hours_loop']:8.1f} h at the loop's {proj['loop_rate']:.1f} images/s "
        f"({best} workers)"
    )
    say(f"  {proj['hours_step']:8.1f} h at the step-alone {step_rate:.1f} images/s")
    return proj

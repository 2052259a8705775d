"""``python -m fcnlib``: train, evaluate, predict and benchmark from the command line.

Defaults are the lab bench, so every command works offline on a laptop:

    python -m fcnlib train --model fcn32s --epochs 8 --checkpoint runs/fcn32s.pt
    python -m fcnlib train --model fcn8s --init-from runs/fcn32s.pt --checkpoint runs/fcn8s.pt
    python -m fcnlib eval runs/fcn8s.pt
    python -m fcnlib predict runs/fcn8s.pt photo.png --out-dir predictions
    python -m fcnlib bench data
    python -m fcnlib data fetch voc2012 --root ~/data    # PASCAL VOC, SBD: see fcnlib.voc

Full scale (a GPU): the paper's data is ``--data voc``: training on SBD train (or VOC train),
validation on seg11valid; the recipes' learning rates follow the backbone and the stage:

    python -m fcnlib data fetch voc2011 && python -m fcnlib data fetch sbd
    python -m fcnlib train --data voc --backbone vgg16 --model fcn32s --recipe heavy \
        --epochs 12 --amp bf16 --channels-last --workers 8 --checkpoint runs/voc32s.pt
    python -m fcnlib train --data voc --backbone vgg16 --model fcn16s --recipe heavy \
        --init-from runs/voc32s.pt --epochs 6 --checkpoint runs/voc16s.pt
    python -m fcnlib eval runs/voc16s.pt --data voc

Training runs data-parallel on several GPUs when started by ``torchrun``, one process per GPU
(``--batch-size`` is then per process; only rank 0 prints and saves; see fcnlib.distributed):

    torchrun --standalone --nproc_per_node=2 -m fcnlib train --model fcn8s --checkpoint runs/a.pt
    torchrun --standalone --nproc_per_node=2 -m fcnlib train --device cpu ...   # gloo, no GPU
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fcnlib import bench

__all__ = ["build_parser", "main"]

_MODELS = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8, "fcn4s": 4}


def build_parser() -> argparse.ArgumentParser:
    from fcnlib.backbones import BACKBONES
    from fcnlib.train import RECIPES

    parser = argparse.ArgumentParser(
        prog="python -m fcnlib",
        description="Fully Convolutional Networks: train, evaluate, predict and benchmark. "
        "Every command defaults to the lab bench (synthetic shapes, small backbone, CPU).",
        epilog="Run 'python -m fcnlib COMMAND --help' for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train an FCN and save a checkpoint",
        description="Train an FCN on the lab-bench scenes.",
        epilog="Several GPUs: 'torchrun --standalone --nproc_per_node=N -m fcnlib train ...' "
        "trains with DistributedDataParallel, one process per GPU (--device cpu: gloo processes "
        "on the CPU). --batch-size is then per process; only rank 0 prints and saves.",
    )
    train.add_argument("--model", choices=sorted(_MODELS), default="fcn8s")
    train.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        default="tiny_vgg",
        help="lab backbones are pre-trained on first use and cached",
    )
    train.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="fast",
        help="'fast' converges in CPU minutes; 'paper' and 'heavy' are the "
        "paper's and the official repository's recipes. The learning rate follows the "
        "backbone ('paper') and is lowered for each stage started with --init-from "
        "(fcnlib.train.stage_recipe)",
    )
    train.add_argument("--epochs", type=bench._positive("--epochs"), default=8)
    train.add_argument("--lr", type=float, help="override the recipe's learning rate")
    train.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    train.add_argument("--align", choices=["same", "caffe"], default="same")
    train.add_argument(
        "--no-pretrained",
        action="store_true",
        help="start from random backbone weights (no pre-training)",
    )
    train.add_argument(
        "--init-from",
        type=Path,
        metavar="CKPT",
        help="staged training: start from a coarser FCN's checkpoint",
    )
    train.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("runs/fcn.pt"),
        help="where to save (and resume from); default runs/fcn.pt",
    )
    speed = train.add_argument_group("speed switches (see fcnlib.train.TrainConfig)")
    speed.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
    speed.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    speed.add_argument("--compile", action="store_true", help="torch.compile the model")
    _data_args(train)
    train.add_argument(
        "--train-set",
        choices=["sbd", "voc2011", "voc2012"],
        default="sbd",
        help="--data voc: the training images (SBD train, as the paper)",
    )
    train.add_argument(
        "--crop",
        type=int,
        default=500,
        help="--data voc: random crop side; smaller images are padded with void, so 500 keeps "
        "every VOC image whole",
    )

    ev = sub.add_parser(
        "eval",
        help="the paper's four metrics for a checkpoint",
        description="Evaluate a checkpoint on lab-bench scenes.",
    )
    ev.add_argument("checkpoint", type=Path)
    ev.add_argument("--split", choices=["val", "test"], default="val", help="lab-bench split")
    _data_args(ev)

    pr = sub.add_parser(
        "predict",
        help="label images: class-index mask and overlay PNGs",
        description="Label image files with a trained checkpoint. For each image, writes "
        "NAME_mask.png, the class ids as a palette PNG in VOC's format (shown in VOC's colours; "
        "np.array(PIL.Image.open(...)) reads the ids), and NAME_overlay.png, the image tinted by "
        "class. NAME is the file's stem (photo.jpg: photo_mask.png); when inputs share a stem, "
        "their extension is kept (photo.jpg, photo.png: photo_jpg_mask.png, "
        "photo_png_mask.png), and if names still collide (a/photo.png, b/photo.png) the input's "
        "position is added (photo_png_1_mask.png, photo_png_2_mask.png). No result overwrites "
        "another of the same call.",
    )
    pr.add_argument("checkpoint", type=Path)
    pr.add_argument(
        "images", type=Path, nargs="+", help="PNG/JPEG/... files, any size or mode, 8 or 16 bit"
    )
    pr.add_argument("--out-dir", type=Path, default=Path("predictions"))
    pr.add_argument("--device", default="auto")

    be = sub.add_parser(
        "bench",
        help="benchmarks (numbers, not tests)",
        description="Print benchmark numbers; see fcnlib.bench.",
    )
    bench.add_arguments(be)

    da = sub.add_parser(
        "data",
        help="download the real datasets (PASCAL VOC, SBD)",
        description="Download and check a dataset of the full-scale experiments (fcnlib.voc). "
        "Nothing is fetched again if it is already complete.",
    )
    da.add_argument("action", choices=["fetch"])
    da.add_argument("name", choices=["voc2012", "voc2011", "sbd"])
    da.add_argument("--root", type=Path, help="default: $FCN_DATA (fcnlib.config.data_dir)")
    return parser


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        choices=["shapes", "voc"],
        default="shapes",
        help="'shapes': lab-bench scenes (offline); 'voc': PASCAL VOC + SBD, validated on "
        "seg11valid (python -m fcnlib data fetch voc2011 / sbd first)",
    )
    p.add_argument("--root", type=Path, help="--data voc: data root (default $FCN_DATA)")
    p.add_argument("--size", type=int, default=128, help="scene side in pixels")
    p.add_argument("--n-train", type=int, default=1024)
    p.add_argument("--n-val", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--no-progress", action="store_true")


def _datasets(args: argparse.Namespace, *, train: bool):
    """(training set or None, validation set, class names) for --data."""
    if args.data == "voc":
        from fcnlib import voc

        try:
            if not train:
                return None, voc.Seg11Valid(root=args.root), voc.VOC_CLASSES
            data, val = voc.paper_datasets(args.train_set, root=args.root, crop=args.crop)
        except voc.DatasetNotFoundError as e:
            raise SystemExit(str(e)) from None
        return data, val, voc.VOC_CLASSES
    from fcnlib.data import CLASSES, ShapesDataset

    split = "val" if train else args.split
    val = ShapesDataset(split, size=args.size, length=args.n_val, seed=args.seed).materialize()
    if not train:
        return None, val, CLASSES
    data = ShapesDataset("train", size=args.size, length=args.n_train, seed=args.seed)
    return data.materialize(), val, CLASSES


def _model_from_checkpoint(path: Path, device: torch.device):
    from fcnlib.models import fcn
    from fcnlib.train import load_checkpoint

    state = load_checkpoint(path)
    spec = state.get("extra", {}).get("model")
    if not spec:
        raise SystemExit(f"{path} was not written by 'python -m fcnlib train' (no model spec)")
    model = fcn(
        spec["backbone"],
        n_classes=spec["n_classes"],
        stride=spec["stride"],
        align=spec["align"],
        pretrained=False,
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval(), spec


def _train(args: argparse.Namespace) -> None:
    from fcnlib.distributed import cleanup, init_distributed

    # a no-op unless torchrun started this process; NCCL puts each process on its own GPU
    init_distributed(backend="gloo" if args.device == "cpu" else None)
    try:
        _train_here(args)
    finally:
        cleanup()


def _train_here(args: argparse.Namespace) -> None:
    from fcnlib.config import pick_device
    from fcnlib.distributed import barrier, is_main_process
    from fcnlib.models import fcn, init_from
    from fcnlib.train import fit, stage_recipe

    device = pick_device(args.device)  # "cuda" is this process's GPU under torchrun
    train, val, classes = _datasets(args, train=True)
    overrides = {"epochs": args.epochs, "seed": args.seed, "num_workers": args.workers}
    for name in ("lr", "batch_size", "amp"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.channels_last:
        overrides["channels_last"] = True
    if args.compile:
        overrides["compile"] = True
    config = stage_recipe(
        args.recipe,
        backbone=args.backbone,
        stride=_MODELS[args.model],
        staged=args.init_from is not None,
        whole_images=args.data == "voc",
        **overrides,
    )
    n_classes = len(classes)
    spec = {"backbone": args.backbone, "n_classes": n_classes, "stride": _MODELS[args.model],
            "align": args.align}  # fmt: skip
    if not is_main_process():
        barrier()  # let rank 0 pre-train and cache the lab backbone first, then load it
    model = fcn(
        args.backbone,
        n_classes=n_classes,
        stride=spec["stride"],
        align=args.align,
        pretrained=not args.no_pretrained,
        progress=not args.no_progress and is_main_process(),
    )
    if is_main_process():
        barrier()
    if args.init_from is not None:
        coarser, _ = _model_from_checkpoint(args.init_from, torch.device("cpu"))
        init_from(model, coarser)
    history = fit(model, train, val, config=config, n_classes=n_classes, device=device,
                  checkpoint=args.checkpoint, progress=not args.no_progress,
                  extra={"model": spec, "data": args.data})  # fmt: skip
    if not is_main_process():
        return
    last = history[-1]
    print(
        f"{args.model} ({args.backbone}, {args.data}, {args.recipe} recipe, lr {config.lr:.3g}), "
        f"{len(history)} epochs: mean IU "
        f"{100 * last.get('mean_iu', float('nan')):.1f}, pixel acc "
        f"{100 * last.get('pixel_acc', float('nan')):.1f}; saved {args.checkpoint}"
    )


def _eval(args: argparse.Namespace) -> None:
    from fcnlib.config import pick_device
    from fcnlib.train import evaluate

    device = pick_device(args.device)
    model, spec = _model_from_checkpoint(args.checkpoint, device)
    _, data, classes = _datasets(args, train=False)
    if len(classes) != spec["n_classes"]:
        raise SystemExit(
            f"{args.checkpoint} predicts {spec['n_classes']} classes but --data {args.data} has "
            f"{len(classes)}; evaluate it on the data it was trained on"
        )
    if args.data == "voc":  # whole images of different sizes: one at a time
        loader = torch.utils.data.DataLoader(
            data, batch_size=1, num_workers=args.workers, pin_memory=device.type == "cuda"
        )
        what = f"{len(data)} seg11valid images"
    else:
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=16)
        what = f"{len(data[0])} {args.split} scenes"
    scores = evaluate(model, loader, n_classes=spec["n_classes"], device=device,
                      progress=not args.no_progress)  # fmt: skip
    print(f"{args.checkpoint} on {what}: {scores}")
    print(scores.to_table(list(classes)))


def _output_names(paths: list[Path]) -> list[str]:
    """One output name per input, unique within the call (see the predict --help): the stem;
    the name with its extension where stems collide; then the input's position (1-based)."""
    from collections import Counter

    stems = Counter(p.stem for p in paths)
    names = [p.name.replace(".", "_") if stems[p.stem] > 1 else p.stem for p in paths]
    counts = Counter(names)
    names = [f"{n}_{i}" if counts[n] > 1 else n for i, n in enumerate(names, 1)]
    clashes = sorted(n for n, c in Counter(names).items() if c > 1)
    if clashes:  # only inputs named like another's fallback, e.g. photo_png_2.png
        raise SystemExit(
            f"cannot give every input its own output name: {clashes} would be written twice; "
            "rename those input files, or run predict on them separately with another --out-dir"
        )
    return names


def _predict(args: argparse.Namespace) -> None:
    from torchvision.utils import save_image

    from fcnlib.config import pick_device
    from fcnlib.infer import load_image, predict, save_label_png
    from fcnlib.viz import overlay

    device = pick_device(args.device)
    model, spec = _model_from_checkpoint(args.checkpoint, device)
    if spec["n_classes"] > 255:  # VOC's palette PNG holds ids 0-254, 255 meaning void
        raise SystemExit(
            f"{args.checkpoint} predicts {spec['n_classes']} classes; a VOC palette PNG holds "
            "at most 255 (ids 0-254); label the images with fcnlib.infer.predict instead"
        )
    names = _output_names(args.images)
    images = [load_image(p) for p in args.images]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    labels = predict(model, images)
    for path, name, image, label in zip(args.images, names, images, labels, strict=True):
        mask, over = args.out_dir / f"{name}_mask.png", args.out_dir / f"{name}_overlay.png"
        save_label_png(label, mask)  # class ids, in VOC's colours
        save_image(overlay(image, label), over)
        print(f"{path} -> {mask}, {over}")


def _bench(args: argparse.Namespace) -> None:
    bench.run(args)


def _data(args: argparse.Namespace) -> None:
    from urllib.error import URLError

    from fcnlib import voc

    try:
        path = voc.fetch(args.name, args.root)
    except (URLError, ConnectionError, TimeoutError) as e:
        where = voc.dataset_dir(args.name, args.root)
        raise SystemExit(
            f"could not download {args.name}: {e}. Check the network connection and try again, "
            f"or download the archive by hand and unpack it so that {where} exists "
            "(see the fcnlib.voc module documentation for the files and their layout)"
        ) from e
    print(f"{args.name}: {path}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    commands = {"train": _train, "eval": _eval, "predict": _predict, "bench": _bench, "data": _data}
    commands[args.command](args)


if __name__ == "__main__":
    main(sys.argv[1:])

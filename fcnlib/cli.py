"""``python -m fcnlib``: train, evaluate, predict and benchmark from the command line.

Defaults are the lab bench, so every command works offline on a laptop:

    python -m fcnlib train --model fcn32s --epochs 8 --checkpoint runs/fcn32s.pt
    python -m fcnlib train --model fcn8s --init-from runs/fcn32s.pt --checkpoint runs/fcn8s.pt
    python -m fcnlib eval runs/fcn8s.pt
    python -m fcnlib predict runs/fcn8s.pt photo.png holiday/ --out-dir predictions  # folders too
    python -m fcnlib bench data
    python -m fcnlib data fetch voc2012 --root ~/data    # PASCAL VOC, SBD: see fcnlib.data.voc

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
import contextlib
import errno
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from fcnlib.system import cpu_cores

__all__ = ["build_parser", "main"]

_MODELS = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8, "fcn4s": 4}


def build_parser() -> argparse.ArgumentParser:
    import fcnlib

    prog = _prog()
    parser = _Parser(
        prog=prog,
        description="Fully Convolutional Networks: train, evaluate, predict and benchmark. "
        "Every command defaults to the lab bench (synthetic shapes, small backbone, CPU).",
        epilog=f"Run '{prog} COMMAND --help' for the options of one command.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"fcnlib {fcnlib.__version__} (torch {torch.__version__})",
        help="print fcnlib's and torch's versions and exit",
    )
    _debug_argument(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_train_parser, _eval_parser, _predict_parser, _bench_parser, _data_parser):
        add(sub)
    for command in sub.choices.values():
        _debug_argument(command, default=argparse.SUPPRESS)  # keeps a --debug given before
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line that points to --help (not the usage
    block, which buries the error under every option)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _debug_argument(parser: argparse.ArgumentParser, *, default) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="on an error, show the traceback, not only its one-line message (also FCN_DEBUG=1)",
    )


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from fcnlib.backbones import BACKBONES
    from fcnlib.recipes import RECIPES

    train = sub.add_parser(
        "train",
        help="train an FCN and save a checkpoint",
        description="Train an FCN (lab-bench scenes by default, --data voc for PASCAL VOC). "
        "After every epoch it saves --checkpoint NAME.pt and, beside it, NAME.best.pt (the "
        "weights of the best validation mean IU so far), NAME.metrics.jsonl (one line of "
        "numbers per epoch) and, when TensorBoard is installed, NAME.tb/ (tensorboard --logdir "
        "NAME.tb). A --checkpoint that already holds a run is refused unless --resume is given: "
        "then the run continues where it stopped, and ends exactly as an uninterrupted run "
        "would. On --resume, a larger --epochs extends the run (its schedule becomes the "
        "longer run's from there on), --lr sets a new rate from there on, and --workers, "
        "--channels-last and --compile may change; any other change (recipe, batch size, "
        "data, model, ...) is refused, as it would make another run. One run at a time writes "
        "a record (it holds NAME.lock while it runs), a new run never replaces another run's "
        "files, and --resume first repairs a record that a killed run left behind. A loss that "
        "explodes or turns nan stops the run; the checkpoint keeps the last good epoch.",
        epilog="Several GPUs: 'torchrun --standalone --nproc_per_node=N -m fcnlib train ...' "
        "trains with DistributedDataParallel, one process per GPU (--device cpu: gloo processes "
        "on the CPU). --batch-size is then per process; only rank 0 prints and saves. A run "
        "resumes only under as many processes as it was trained by.",
    )
    train.add_argument(
        "--model",
        choices=sorted(_MODELS),
        default="fcn8s",
        help="the net: fcn32s, fcn16s, fcn8s (the paper's; default) or fcn4s (one more skip)",
    )
    train.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        default="tiny_vgg",
        help="tiny_vgg ships its pre-trained weights; tiny_vgg_wide is pre-trained on first use "
        "(about a minute of CPU) and cached",
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
    train.add_argument(
        "--epochs",
        type=_positive("--epochs"),
        help="epochs in all (default 8; with --resume, the run's own, and a larger number "
        "extends the run)",
    )
    train.add_argument(
        "--lr",
        type=_rate("--lr"),
        help="override the recipe's learning rate; with --resume, the rate from there on",
    )
    train.add_argument(
        "--batch-size",
        type=_positive("--batch-size"),
        help="override the recipe's batch size",
    )
    train.add_argument(
        "--align",
        choices=["same", "caffe"],
        default="same",
        help="'same': pad so that every score sits over its pixel (default); 'caffe': the "
        "official nets' 100-pixel input padding and crops (Chapter 3)",
    )
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
    _run_arguments(train)
    _data_args(train)
    train.add_argument(
        "--train-set",
        choices=["sbd", "voc2011", "voc2012"],
        default="sbd",
        help="--data voc: the training images (SBD train, as the paper)",
    )
    train.add_argument(
        "--crop",
        type=_positive("--crop"),
        default=500,
        help="--data voc: random crop side; smaller images are padded with void, so 500 keeps "
        "every VOC image whole",
    )


def _run_arguments(train: argparse.ArgumentParser) -> None:
    """train's options about the run's record and speed: checkpoint, resume, precision."""
    from fcnlib.precision import AMP_CHOICES

    train.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("runs/fcn.pt"),
        help="where to save the run (default runs/fcn.pt); refused if it holds a run already, "
        "unless --resume",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --checkpoint (with the same options; a larger --epochs "
        "extends it, --lr changes its rate from there on)",
    )
    speed = train.add_argument_group("speed switches (see fcnlib.train.TrainConfig)")
    speed.add_argument(
        "--amp",
        choices=AMP_CHOICES,
        help="mixed precision (default: the recipe's; 'auto': bf16 where the hardware has it, "
        "fp16 on older GPUs, float32 on most CPUs)",
    )
    speed.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    speed.add_argument("--compile", action="store_true", help="torch.compile the model")


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="the paper's four metrics for a checkpoint",
        description="Evaluate a checkpoint on lab-bench scenes, or with --data voc on seg11valid.",
    )
    ev.add_argument("checkpoint", type=Path, help="a checkpoint written by train")
    ev.add_argument(
        "--split",
        choices=["val", "test"],
        default="val",
        help="lab-bench split (--data voc: always seg11valid)",
    )
    _data_args(ev)


def _predict_parser(sub: argparse._SubParsersAction) -> None:
    from fcnlib.infer import DEFAULT_MAX_PIXELS

    pr = sub.add_parser(
        "predict",
        help="label images: class-index mask and overlay PNGs",
        description="Label image files with a trained checkpoint, one image at a time (memory "
        "holds one image). An argument that is a folder means its image files ("
        f"{' '.join(_IMAGE_SUFFIXES)}, in any case), sorted by name; not its subfolders, hidden "
        "files, nor the NAME_mask.png and NAME_overlay.png that predict writes. Images are read "
        "as displayed: a photo's EXIF orientation is applied, so its mask has the size viewers "
        "show. For each image, writes NAME_mask.png, the class ids as a palette PNG in VOC's "
        "format (shown in VOC's colours; np.array(PIL.Image.open(...)) reads the ids), and "
        "NAME_overlay.png, the image tinted by class. NAME is the file's stem (photo.jpg: "
        "photo_mask.png); when inputs share a stem (ignoring case), their extension is kept "
        "(photo.jpg, photo.png: photo_jpg_mask.png, photo_png_mask.png), and if names still "
        "collide (a/photo.png, b/photo.png) the input's position is added (photo_png_1_mask.png, "
        "photo_png_2_mask.png). Before any work, every input, every image's header and every "
        "output name is checked: a file already in --out-dir is replaced only with --overwrite, "
        "and an input never; each file is written under a temporary name and then renamed, so "
        "an interrupted run leaves no half-written file.",
    )
    pr.add_argument("checkpoint", type=Path, help="a checkpoint written by train")
    pr.add_argument(
        "images",
        type=Path,
        nargs="+",
        help="image files (PNG/JPEG/..., any size up to --max-pixels, any mode, 8 or 16 bit) "
        "or folders of them",
    )
    pr.add_argument(
        "--out-dir", type=Path, default=Path("predictions"), help="default ./predictions"
    )
    pr.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs already in --out-dir (never an input: those are always refused)",
    )
    pr.add_argument(
        "--max-pixels",
        type=_positive("--max-pixels", minimum=0),
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images of more pixels (default {DEFAULT_MAX_PIXELS}, i.e. "
        f"{DEFAULT_MAX_PIXELS // 10**6} megapixels: predict needs about 0.24 GiB per megapixel "
        "with the lab backbone, ~9.5 GiB for 40); 0: no limit",
    )
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    be = sub.add_parser(
        "bench",
        help="benchmarks (numbers, not tests)",
        description="Print benchmark numbers; see fcnlib.bench.",
    )
    _bench_arguments(be)


def _data_parser(sub: argparse._SubParsersAction) -> None:
    da = sub.add_parser(
        "data",
        help="download the real datasets (PASCAL VOC, SBD)",
        description="Download and check a dataset of the full-scale experiments (fcnlib.data.voc). "
        "Nothing is fetched again if it is already complete.",
    )
    da.add_argument("action", choices=["fetch"], help="fetch: download, unpack and check")
    da.add_argument(
        "name",
        choices=["voc2012", "voc2011", "sbd"],
        help="PASCAL VOC 2012 or 2011 (images, segmentation labels), or SBD (the paper's "
        "training labels)",
    )
    da.add_argument("--root", type=Path, help="default: $FCN_DATA (fcnlib.config.data_dir)")


def _prog() -> str:
    """'fcnlib' when run as the console script, 'python -m fcnlib' otherwise."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m fcnlib" if name in ("", "__main__.py", "-c") else name


# Far above any rate that trains (the recipes' run from 1e-10 to 1e-2), so a diverging run can
# still be watched; far enough below float32's largest number (3.4e38) that a step stays finite.
_MAX_RATE = 1e6


def _rate(flag: str):
    """An argparse type for a learning rate: a finite number > 0."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not 0 < value <= _MAX_RATE:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a number above 0 and at most {_MAX_RATE:g}, got {text} (the "
                "recipes' rates run from 1e-10, the paper's sum-over-pixels loss, to 1e-2)"
            )
        return value

    return parse


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        choices=["shapes", "voc"],
        default="shapes",
        help="'shapes': lab-bench scenes (offline); 'voc': PASCAL VOC + SBD, validated on "
        "seg11valid (python -m fcnlib data fetch voc2011 / sbd first)",
    )
    p.add_argument("--root", type=Path, help="--data voc: data root (default $FCN_DATA)")
    p.add_argument("--size", type=_positive("--size", 32), default=128, help="scene side in pixels")
    p.add_argument(
        "--n-train",
        type=_positive("--n-train"),
        default=1024,
        help="lab-bench training scenes (default 1024)",
    )
    p.add_argument(
        "--n-val",
        type=_positive("--n-val"),
        default=128,
        help="lab-bench validation (or test) scenes (default 128)",
    )
    p.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed of the scenes and of training, 0 to 2**32 - 1 (default 0)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help="DataLoader worker processes, or 'auto' (default): with --data voc on a GPU, "
        "cores - 1 up to 8 (one item costs a few ms of one core to decode and crop: see "
        "'bench pipeline'); otherwise 0, loading in the main process",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _seed(text: str) -> int:
    """--seed: a whole number that every generator takes (NumPy's stop at 2**32 - 1)."""
    value = _positive("--seed", 0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"--seed must be below 2**32 = {2**32}, got {value}")
    return value


def _workers(text: str) -> int | None:
    """--workers: a count >= 0, or 'auto' (None, resolved by :func:`_auto_workers`)."""
    return None if text == "auto" else _positive("--workers", 0)(text)


def _auto_workers(args: argparse.Namespace, device: torch.device) -> int:
    """The DataLoader workers of ``--workers auto``. VOC and SBD items are decoded from JPEG and
    PNG/.mat files, a few ms of one core each (``bench pipeline`` prints the cost): on a GPU,
    workers on every core but one (up to 8) keep the step fed; on Colab's 2 vCPUs that is one.
    The lab scenes are tensors in memory, and CPU training needs its cores for itself: 0."""
    if args.workers is not None:
        return args.workers
    if args.data != "voc" or device.type == "cpu":
        return 0
    return min(8, max(1, cpu_cores() - 1))


def _classes(args: argparse.Namespace) -> tuple[str, ...]:
    if args.data == "voc":
        from fcnlib.data.voc import VOC_CLASSES

        return tuple(VOC_CLASSES)
    from fcnlib.data import CLASSES

    return tuple(CLASSES)


def _datasets(args: argparse.Namespace, *, train: bool):
    """(training set or None, validation set, class names) for --data."""
    if args.data == "voc":
        from fcnlib.data import voc

        try:
            # compact: uint8 items, converted on the device by fit and evaluate
            if not train:
                val = voc.Seg11Valid(root=args.root, transforms=voc.eval_transform(compact=True))
                return None, val, voc.VOC_CLASSES
            data, val = voc.paper_datasets(
                args.train_set, root=args.root, crop=args.crop, compact=True
            )
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
    from fcnlib.train import load_checkpoint

    return _model_from_state(load_checkpoint(path), path, device)


def _spec(state: dict, path: Path) -> dict:
    """The model spec that 'train' records in its checkpoints."""
    spec = state.get("extra", {}).get("model")
    if not spec:
        raise SystemExit(f"{path} was not written by 'python -m fcnlib train' (no model spec)")
    return spec


def _model_from_state(state: dict, path: Path, device: torch.device):
    from fcnlib.models import fcn

    spec = _spec(state, path)
    model = fcn(
        spec["backbone"],
        n_classes=spec["n_classes"],
        stride=spec["stride"],
        align=spec["align"],
        pretrained=False,
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval(), spec


def _init_from_state(args: argparse.Namespace, model: dict) -> dict:
    """The checkpoint that --init-from names, checked against this run's net (``model``: the
    run's model options) before any data is read or net built."""
    from fcnlib.train import load_checkpoint

    path = args.init_from
    state = load_checkpoint(path)
    spec = _spec(state, path)
    flags = {"backbone": "--backbone", "n_classes": "--data", "align": "--align"}
    wrong = [
        f"{flag} ({path} has {key} {spec[key]!r}, this run {model[key]!r})"
        for key, flag in flags.items()
        if spec[key] != model[key]
    ]
    if spec["stride"] <= model["stride"]:
        wrong.append(
            f"--model (it is an FCN-{spec['stride']}s, so it can start only a finer net than "
            f"itself, not fcn{model['stride']}s)"
        )
    if wrong:
        raise SystemExit(
            f"--init-from {path} cannot start this run: {'; '.join(wrong)}. Staged training "
            "starts fcn16s from an fcn32s checkpoint and fcn8s from an fcn16s one, with the same "
            "--backbone, --align and --data"
        )
    return state


def _train(args: argparse.Namespace) -> None:
    from fcnlib.distributed import cleanup, init_distributed, is_main_process
    from fcnlib.record import hold_record

    # a no-op unless torchrun started this process; NCCL puts each process on its own GPU
    init_distributed(backend="gloo" if args.device == "cpu" else None)
    try:
        _check_output(args.checkpoint)
        # the process that writes the record holds its lock from before it reads the record
        with hold_record(args.checkpoint) if is_main_process() else contextlib.nullcontext():
            _train_here(args)
    except RuntimeError as e:
        if is_main_process() or not _lost_a_peer(e):
            raise
        # rank 0 failed (a full disk, say) and its connection closed: its error says why
        raise SystemExit(
            f"process {torch.distributed.get_rank()} of {torch.distributed.get_world_size()} "
            "stopped because another process of this run failed: see process 0's error"
        ) from None
    finally:
        cleanup()


def _lost_a_peer(err: RuntimeError) -> bool:
    """Whether ``err`` is a torch.distributed collective that failed as a peer went away."""
    text = str(err)
    gone = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    return isinstance(err, torch.distributed.DistError) or any(g in text for g in gone)


# What each refused TrainConfig field is set by on the command line.
_CONFIG_FLAGS = {"batch_size": "--batch-size", "amp": "--amp", "seed": "--seed"}
# The data options a run keeps in its checkpoint, compared on --resume (not --root: data moves).
_DATA_OPTIONS = ("data", "size", "n_train", "n_val", "seed", "train_set", "crop")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_output(path: Path) -> None:
    """Refuse a --checkpoint whose record cannot be written (a folder, no write permission,
    names too long for the file system), before any work."""
    from fcnlib.record import check_record_path

    try:
        check_record_path(path)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--{e}") from e  # the messages start with "checkpoint PATH"


def _saved_run(args: argparse.Namespace) -> dict | None:
    """The checkpoint already at --checkpoint (None if there is none), after checking the
    paths: before any data is read or net built."""
    from fcnlib.record import record_files, record_names
    from fcnlib.train import load_checkpoint

    if args.init_from is not None and not args.init_from.is_file():
        raise SystemExit(f"--init-from {args.init_from}: no such file")
    if not args.checkpoint.exists():
        others = [str(p) for p in record_files(args.checkpoint).values() if p.exists()]
        if others:
            raise SystemExit(
                f"--checkpoint {args.checkpoint}: files of another run's record are there "
                f"({', '.join(others)}), and a new run would replace them. Delete them (a run's "
                f"whole record: {record_names(args.checkpoint)}) to start over there, or give "
                "another --checkpoint"
            )
        if args.resume:
            raise SystemExit(
                f"--resume: there is no run at --checkpoint {args.checkpoint}; leave out "
                "--resume to start a new run there"
            )
        return None
    return load_checkpoint(args.checkpoint)


def _check_run(args: argparse.Namespace, config, run: dict, state: dict | None) -> dict | None:
    """The saved run that --resume continues (None for a new run), after refusing, in terms of
    the command line, whatever this run cannot do."""
    from fcnlib.config import pick_device
    from fcnlib.precision import amp_setting, precision_name, resolve_amp
    from fcnlib.record import record_names
    from fcnlib.train import resume_conflicts

    if state is None:
        return None
    done, planned = state["epoch"], state["config"].get("epochs")
    if not args.resume:
        raise SystemExit(
            f"--checkpoint {args.checkpoint} already holds a run ({done} of {planned} epochs "
            "done). Add --resume to continue it (a larger --epochs extends it), or give another "
            "--checkpoint to start a new run (or delete the run's whole record, "
            f"{record_names(args.checkpoint)}, to train it again)."
        )
    _check_resumable(args.checkpoint, state)
    saved = state.get("extra", {})
    changes = []
    for part, flags in (("model", {"backbone": "--backbone", "stride": "--model",
                                   "align": "--align", "n_classes": "--data"}),
                        ("data_options", {k: _flag(k) for k in _DATA_OPTIONS}),
                        ("start", {"pretrained": "--no-pretrained",
                                   "init_from": "--init-from"})):  # fmt: skip
        old = saved.get(part)
        if old is None:
            continue  # a checkpoint of an older fcnlib: nothing recorded to compare
        for key, flag in flags.items():
            if key in old and old[key] != run[part][key]:
                changes.append(f"{flag} (the run has {key} {old[key]!r}, now {run[part][key]!r})")
    precision = precision_name(resolve_amp(pick_device(args.device), config.amp))
    conflicts = resume_conflicts(
        state["config"], config, saved_precision=state.get("precision"), precision=precision
    )
    for key, (old, new) in sorted(conflicts.items()):
        if key == "seed" and "data_options" in saved:
            continue  # --seed: reported with the data options
        if key == "precision":
            changes.append(
                f"--amp (the run computed in {old}; --amp {config.amp} means {new} here: "
                f"pass --amp {amp_setting(old)})"
            )
            continue
        flag = _CONFIG_FLAGS.get(key, "--recipe")
        changes.append(f"{flag} (the run has {key} {old!r}, now {new!r})")
    if config.epochs < done:
        changes.append(f"--epochs {config.epochs} (the run has done {done} already)")
    if changes:
        raise SystemExit(
            f"cannot --resume {args.checkpoint} with other options: {'; '.join(changes)}. "
            "Repeat the run's options; only --epochs (to extend it), --lr, --workers, "
            "--channels-last and --compile may change. For another run give another --checkpoint."
        )
    return state


def _check_resumable(path: Path, state: dict) -> None:
    """Refuse, in terms of the command line, to --resume a file of weights only (a
    NAME.best.pt) or a run trained by another number of processes."""
    from fcnlib.distributed import world_size

    if state.get("optimizer") is None:
        name = path.name.removesuffix(f".best{path.suffix}")
        what, run = "a file of weights only", "the run's own checkpoint"
        if name != path.name:
            what, run = "a best-weights file", path.with_name(name + path.suffix)
        raise SystemExit(
            f"cannot --resume {path}: it is {what}, without the optimizer's state. Resume from "
            f"{run}, or start from it with --init-from {path} (the next, finer stage: "
            "fcn32s -> fcn16s -> fcn8s) and another --checkpoint."
        )
    saved, now = state.get("world_size"), world_size()
    if saved is not None and saved != now:
        command = "python -m fcnlib train"
        if saved > 1:
            command = f"torchrun --standalone --nproc_per_node={saved} -m fcnlib train"
        processes = {n: "1 process" if n == 1 else f"{n} processes" for n in (saved, now)}
        raise SystemExit(
            f"cannot --resume {path}: it was trained by {processes[saved]} and "
            f"this is {processes[now]}; an epoch's steps depend on that number. Resume it "
            f"with the same number: {command} ... --checkpoint {path} --resume"
        )


def _train_here(args: argparse.Namespace) -> None:
    from fcnlib.config import pick_device
    from fcnlib.distributed import barrier, is_main_process
    from fcnlib.models import fcn, init_from
    from fcnlib.train import TrainConfig, fit, stage_recipe

    existing = _saved_run(args)  # checks the paths first
    saved = None if existing is None else TrainConfig.from_dict(existing["config"])
    if not args.resume:
        saved = None  # a new run takes the defaults (and is refused below if the path is taken)
    overrides = {"seed": args.seed, "num_workers": args.workers or 0}  # auto: resolved below
    # on --resume, what is not given stays as the run had it (not the defaults)
    overrides["epochs"] = args.epochs or (saved.epochs if saved else 8)
    if args.lr is None and saved is not None:
        overrides["lr"] = saved.lr
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
    n_classes = len(_classes(args))
    run = {
        "model": {"backbone": args.backbone, "n_classes": n_classes, "stride": _MODELS[args.model],
                  "align": args.align},
        "data_options": {k: getattr(args, k) for k in _DATA_OPTIONS},
        "start": {"pretrained": not args.no_pretrained,
                  "init_from": None if args.init_from is None else str(args.init_from)},
    }  # fmt: skip
    state = _check_run(args, config, run, existing)  # before any data is read or net built
    start = None
    if args.init_from is not None and state is None:
        start = _init_from_state(args, run["model"])
    device = pick_device(args.device)  # "cuda" is this process's GPU under torchrun
    config = config.replace(num_workers=_auto_workers(args, device))
    train, val, _ = _datasets(args, train=True)
    if not is_main_process():
        barrier()  # let rank 0 pre-train and cache the lab backbone first, then load it
    model = fcn(
        args.backbone,
        n_classes=n_classes,
        stride=run["model"]["stride"],
        align=args.align,
        pretrained=not args.no_pretrained and state is None,
        progress=not args.no_progress and is_main_process(),
    )
    if is_main_process():
        barrier()
    if start is not None:
        coarser, _ = _model_from_state(start, args.init_from, torch.device("cpu"))
        init_from(model, coarser)
    extra = {**run, "data": args.data}
    if state is not None and "start" not in state["extra"]:
        extra = state["extra"]  # a checkpoint of an older fcnlib: keep what it recorded
    try:
        history = fit(model, train, val, config=config, n_classes=n_classes, device=device,
                      checkpoint=args.checkpoint, resume=state is not None,
                      progress=not args.no_progress, extra=extra)  # fmt: skip
    except FloatingPointError as e:  # divergence, a nan loss, weights no longer finite
        what = str(e).split(". ")[0]  # the library's own advice follows; give the flags'
        what = what if what.startswith("training") else f"training stopped: {what}"
        kept = (f"--checkpoint {args.checkpoint} keeps the last good epoch"
                if args.checkpoint.exists() else "Nothing was saved")  # fmt: skip
        raise SystemExit(
            f"{what}. {kept}. Try a lower --lr (this run: {config.lr:.3g}), or --amp off."
        ) from e
    if not is_main_process():
        return
    last = history[-1]
    scores = (
        f"mean IU {100 * last.get('mean_iu', float('nan')):.1f}, pixel acc "
        f"{100 * last.get('pixel_acc', float('nan')):.1f}"
    )
    if state is not None and state["epoch"] == config.epochs:
        print(
            f"{args.checkpoint} has finished its {config.epochs} epochs; nothing to train "
            f"(give --epochs above {config.epochs} to extend it). Last epoch: {scores}"
        )
        return
    print(
        f"{args.model} ({args.backbone}, {args.data}, {args.recipe} recipe, lr {config.lr:.3g}), "
        f"{len(history)} epochs: {scores}; saved {_saved_files(args.checkpoint)}"
    )


def _saved_files(checkpoint: Path) -> str:
    """The record's files as they are: ``a.pt (a.best.pt, a.metrics.jsonl beside it)``."""
    from fcnlib.record import record_files

    files = record_files(checkpoint)
    beside = [p.name for key, p in files.items() if key in ("best", "metrics") and p.exists()]
    return f"{checkpoint} ({', '.join(beside)} beside it)" if beside else str(checkpoint)


def _eval(args: argparse.Namespace) -> None:
    from fcnlib.config import pick_device
    from fcnlib.train import evaluate

    device = pick_device(args.device)
    model, spec = _model_from_checkpoint(args.checkpoint, device)
    if len(_classes(args)) != spec["n_classes"]:
        raise SystemExit(
            f"{args.checkpoint} predicts {spec['n_classes']} classes but --data {args.data} has "
            f"{len(_classes(args))}; evaluate it on the data it was trained on"
        )
    _, data, classes = _datasets(args, train=False)
    if args.data == "voc":  # whole images of different sizes: one at a time
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=1,
            num_workers=_auto_workers(args, device),
            pin_memory=device.type == "cuda",
        )
        what = f"{len(data)} seg11valid images"
    else:
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=16)
        what = f"{len(data[0])} {args.split} scenes"
    scores = evaluate(model, loader, n_classes=spec["n_classes"], device=device,
                      progress=not args.no_progress)  # fmt: skip
    print(f"{args.checkpoint} on {what}: {scores}")
    print(scores.to_table(list(classes)))


# What a folder given to predict stands for: its files PIL reads, by extension (any case).
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_OUTPUT_KINDS = ("mask", "overlay")  # predict writes NAME_mask.png and NAME_overlay.png


def _image_inputs(paths: list[Path]) -> list[Path]:
    """The image files ``paths`` name, each once: a folder stands for its images (sorted, not
    recursive, not hidden, not predict's outputs). Every path is checked before any work."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"no such file or folder: {_first_few(missing)}; check the paths")
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.iterdir() if _is_input_image(p))
        if not found:
            raise SystemExit(
                f"folder {path} holds no images ({' '.join(_IMAGE_SUFFIXES)}); predict does not "
                "look into subfolders, nor at the *_mask.png and *_overlay.png it writes"
            )
        files += found
    unique = {p.resolve(): p for p in reversed(files)}  # the first mention of a file wins
    return list(reversed(unique.values()))


def _is_input_image(path: Path) -> bool:
    outputs = tuple(f"_{kind}.png" for kind in _OUTPUT_KINDS)
    return (
        path.suffix.lower() in _IMAGE_SUFFIXES
        and not path.name.startswith(".")  # e.g. macOS's ._photo.jpg, which is no image
        and not path.name.endswith(outputs)
        and path.is_file()
    )


def _first_few(items: list, n: int = 5, *, sep: str = ", ") -> str:
    more = f"{sep}and {len(items) - n} more" if len(items) > n else ""
    return sep.join(map(str, items[:n])) + more


def _output_names(paths: list[Path]) -> list[str]:
    """One output name per input, unique within the call (see the predict --help): the stem;
    the name with its extension where stems collide; then the input's position (1-based).
    Names are compared ignoring case: on macOS and Windows Photo_mask.png is photo_mask.png."""
    from collections import Counter

    stems = Counter(p.stem.casefold() for p in paths)
    names = [p.name.replace(".", "_") if stems[p.stem.casefold()] > 1 else p.stem for p in paths]
    counts = Counter(n.casefold() for n in names)
    names = [f"{n}_{i}" if counts[n.casefold()] > 1 else n for i, n in enumerate(names, 1)]
    clashes = sorted(n for n, c in Counter(n.casefold() for n in names).items() if c > 1)
    if clashes:  # only inputs named like another's fallback, e.g. photo_png_2.png
        raise SystemExit(
            f"cannot give every input its own output name: {clashes} would be written twice; "
            "rename those input files, or run predict on them separately with another --out-dir"
        )
    return names


def _check_out_dir(out: Path) -> None:
    """Refuse an --out-dir that cannot be written, before any work."""
    from fcnlib._io import check_writable

    if out.exists() and not out.is_dir():
        raise SystemExit(
            f"--out-dir {out} is a file, not a folder; give a folder (a missing one is created)"
        )
    folder = out
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders below it are created before the first image
    if not folder.is_dir():
        raise SystemExit(f"--out-dir {out}: {folder} is a file, not a folder; choose another")
    try:
        check_writable(folder)
    except OSError as e:
        raise SystemExit(
            f"--out-dir {out}: cannot write in {folder} ({e.strerror or e}); choose another "
            "--out-dir"
        ) from e


def _check_outputs(inputs: list[Path], outputs: list[Path], out: Path, *, overwrite: bool) -> None:
    """Refuse, before any work, to replace an input (ever) or a file (without --overwrite)."""

    def file_id(path: Path) -> tuple[int, int]:  # one file under two names (links) is caught
        st = path.stat()
        return st.st_dev, st.st_ino

    taken = {file_id(p) for p in inputs}
    existing = [p for p in outputs if p.exists()]
    inputs_hit = [p for p in existing if file_id(p) in taken]
    if inputs_hit:
        raise SystemExit(
            f"predict would overwrite its own input{'s' * (len(inputs_hit) > 1)} "
            f"{_first_few(inputs_hit)}, which it never does, even with --overwrite: choose "
            f"another --out-dir (e.g. {out / 'predictions'}), or rename "
            f"{'those inputs' if len(inputs_hit) > 1 else 'that input'}"
        )
    folders = [p for p in existing if p.is_dir()]
    if folders:
        raise SystemExit(
            f"outputs would replace the folders {_first_few(folders)}; choose another --out-dir"
        )
    if existing and not overwrite:
        one = len(existing) == 1
        raise SystemExit(
            f"{len(existing)} output file{'' if one else 's'} already exist{'s' if one else ''} "
            f"in {out}: {_first_few([p.name for p in existing])}; pass --overwrite to replace "
            f"{'it' if one else 'them'}, or choose another --out-dir"
        )


def _check_images(paths: list[Path], max_pixels: int | None) -> None:
    """Refuse, from their headers, images load_image would refuse: all named in one message."""
    from fcnlib.infer import check_image

    problems = []
    for path in paths:
        try:
            check_image(path, max_pixels=max_pixels)
        except (OSError, ValueError) as e:
            problems.append(str(e))
    if problems:
        head = f"{len(problems)} of {len(paths)} images cannot be labelled (nothing was written): "
        raise SystemExit((head if len(paths) > 1 else "") + _first_few(problems, 3, sep=" | "))


def _predict(args: argparse.Namespace) -> None:
    from fcnlib.config import pick_device
    from fcnlib.data.labels import save_label_png
    from fcnlib.infer import load_image, predict

    inputs = _image_inputs(args.images)
    names = _output_names(inputs)
    outputs = [[args.out_dir / f"{name}_{kind}.png" for kind in _OUTPUT_KINDS] for name in names]
    _check_out_dir(args.out_dir)
    _check_outputs(inputs, [p for pair in outputs for p in pair], args.out_dir,
                   overwrite=args.overwrite)  # fmt: skip
    max_pixels = args.max_pixels or None
    _check_images(inputs, max_pixels)
    device = pick_device(args.device)
    model, spec = _model_from_checkpoint(args.checkpoint, device)
    if spec["n_classes"] > 255:  # VOC's palette PNG holds ids 0-254, 255 meaning void
        raise SystemExit(
            f"{args.checkpoint} predicts {spec['n_classes']} classes; a VOC palette PNG holds "
            "at most 255 (ids 0-254); label the images with fcnlib.infer.predict instead"
        )
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"--out-dir {args.out_dir} cannot be created ({e}); choose another") from e
    for path, (mask, over) in zip(inputs, outputs, strict=True):  # one image in memory at a time
        image = load_image(path, max_pixels=max_pixels)  # (3, H, W) float, as displayed
        label = predict(model, [image], device=device)[0]  # (H, W) int64
        save_label_png(label, mask, atomic=True)  # class ids, in VOC's colours
        _save_overlay(image, label, over)
        print(f"{path} -> {mask}, {over}", flush=True)


def _save_overlay(image: torch.Tensor, label: torch.Tensor, path: Path) -> None:
    from torchvision.utils import save_image

    from fcnlib._io import atomic_write
    from fcnlib.viz import overlay

    atomic_write(lambda f: save_image(overlay(image, label), f, format="png"), path)


def _data(args: argparse.Namespace) -> None:
    from urllib.error import URLError

    from fcnlib.data import voc

    try:
        path = voc.fetch(args.name, args.root)
    except (URLError, ConnectionError, TimeoutError) as e:
        where = voc.dataset_dir(args.name, args.root)
        raise SystemExit(
            f"could not download {args.name}: {e}. Check the network connection and try again, "
            f"or download the archive by hand and unpack it so that {where} exists "
            "(see the fcnlib.data.voc module documentation for the files and their layout)"
        ) from e
    print(f"{args.name}: {path}")


def _positive(flag: str, minimum: int = 1) -> Callable[[str], int]:
    """An argparse type for a count that must be >= ``minimum`` (1), so that 0 is refused before
    any work (``train --epochs 0`` trained nothing, then crashed on the empty history)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a whole number, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{flag} must be >= {minimum}, got {value}")
        return value

    return parse


def _worker_counts(text: str) -> tuple[int, ...]:
    """'0,2,4' -> (0, 2, 4): DataLoader worker counts, each >= 0."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(
            f"--workers takes counts >= 0 separated by commas, e.g. 0,2,4; got {text!r}"
        )
    return counts


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench``, the benchmarks of :mod:`fcnlib.bench`."""
    from fcnlib.backbones import BACKBONES

    parser.add_argument(
        "what",
        nargs="?",
        default="data",
        choices=["data", "dense", "stitch", "throughput", "pipeline", "all"],
        help="'all': data, dense, stitch and throughput (not pipeline)",
    )
    parser.add_argument(
        "--size",
        type=int,
        help="image side in pixels; for 'pipeline' the fake images' width, their height 3/4 of "
        "it (default 500, i.e. 375 x 500, on CUDA; else 160)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="for 'data' (default 32), 'throughput' and 'pipeline' (default 1, the official "
        "heavy recipe's)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument(
        "--backbone",
        choices=sorted(BACKBONES),
        help="for 'throughput' (default vgg16) and 'pipeline' (default vgg16 on CUDA, else "
        "tiny_vgg)",
    )
    parser.add_argument(
        "--mode", default="both", choices=["train", "infer", "both"], help="for 'throughput'"
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="for 'throughput': add the torch.compile variant (default: on CUDA only)",
    )
    pipe = parser.add_argument_group("pipeline")
    pipe.add_argument(
        "--root",
        type=Path,
        help="a directory with SBD (used as found) or where to write the fake images and keep "
        "them (default: a temporary directory, removed at the end)",
    )
    pipe.add_argument(
        "--images", type=_positive("--images"), help="fake images to write (default 128 on "
        "CUDA, else 64)"
    )  # fmt: skip
    pipe.add_argument(
        "--crop", type=_positive("--crop"), help="random crop side (default 500 on CUDA, else 160)"
    )
    pipe.add_argument(
        "--workers",
        type=_worker_counts,
        help="DataLoader worker counts to measure, e.g. 0,2,4 (default: 0, 2, 4, 8, ... up to "
        "the CPU cores)",
    )
    pipe.add_argument(
        "--steps",
        type=_positive("--steps"),
        help="batches per timed window (default: as many as take about 0.5 s in the step alone, "
        "1 to 50); the median of 3 windows counts",
    )
    pipe.add_argument(
        "--amp",
        choices=["auto", "bf16", "fp16", "off"],
        default="auto",
        help="mixed precision (fcnlib.precision.resolve_amp; default auto)",
    )
    pipe.add_argument(
        "--float-handover",
        action="store_true",
        help="workers hand over float32 images and int64 labels (default: uint8, converted on "
        "the device, as train --data voc does)",
    )
    pipe.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="NHWC memory layout (default: on CUDA only)",
    )


def _bench(args: argparse.Namespace) -> None:
    """Run and print the benchmarks that ``args`` name."""
    from fcnlib.bench import (
        bench_data,
        bench_dense,
        bench_pipeline,
        bench_stitch,
        bench_throughput,
        throughput_table,
    )
    from fcnlib.config import describe_device, pick_device
    from fcnlib.system import cpu_description

    dev = pick_device(args.device)
    cuda = dev.type == "cuda"
    print(
        f"{cpu_description()} | {describe_device(dev)} | torch {torch.__version__}"
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
            f"FCN-8s ({args.backbone or 'vgg16'}, random weights, 21 classes) at {size}x{size}, "
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
            backbone=args.backbone or "vgg16",
            size=size,
            batch_size=batch_size,
            device=args.device,
            compile=args.compile,
            mode=args.mode,
            repeat=repeat,
        )
        print(throughput_table(results, cuda=cuda))
    if "pipeline" in todo:
        bench_pipeline(
            root=args.root,
            images=args.images,
            size=args.size,
            crop=args.crop,
            batch_size=args.batch_size or 1,
            workers=args.workers,
            steps=args.steps,
            device=args.device,
            backbone=args.backbone,
            amp=args.amp,
            channels_last=args.channels_last,
            compact=not args.float_handover,
            verbose=True,
        )


# What a user's mistake ends in: a missing, damaged or unwritable file, a bad value, a full
# disk, no GPU, too little memory. Reported in one line; anything else is a bug in fcnlib and
# keeps its traceback. --debug (or FCN_DEBUG=1) shows the traceback of every error.
_USER_ERRORS = (OSError, ValueError, RuntimeError, EOFError, MemoryError, pickle.UnpicklingError)
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    commands = {"train": _train, "eval": _eval, "predict": _predict, "bench": _bench, "data": _data}
    where = f"{_prog()} {args.command}"
    if args.debug or os.environ.get("FCN_DEBUG", "") not in ("", "0"):
        commands[args.command](args)
        return
    try:
        commands[args.command](args)
    except KeyboardInterrupt:
        kept = ""
        if args.command == "train" and args.checkpoint.exists():
            kept = f"; {args.checkpoint} keeps the last finished epoch (--resume continues it)"
        print(f"{where}: interrupted{kept}", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit as e:  # the command's own checks: already a sentence for people
        if isinstance(e.code, str):
            raise SystemExit(f"{where}: error: {_one_line(e.code)}") from None
        raise
    except _USER_ERRORS as e:
        raise SystemExit(f"{where}: error: {_one_line(_explain(e))}") from None


def _explain(err: BaseException) -> str:
    """What went wrong, in words: the exception's message, and for a full disk or too little
    memory what to do."""
    text = str(err) or type(err).__name__
    if isinstance(err, OSError) and err.errno in _FULL:
        return (
            f"{text}: no space left (a full disk, a quota or a file size limit). Free some space "
            "or choose another place; files written before are intact (every save is atomic)"
        )
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return (
            f"out of memory ({text.split(chr(10))[0]}): use smaller images or a smaller "
            "--batch-size, or run on a machine with more memory"
        )
    return text


def _one_line(text: str) -> str:
    """Whitespace and line breaks collapsed: an error is one line, then (--debug) the trace."""
    return " ".join(text.split()) + " (--debug shows where)"


if __name__ == "__main__":
    main(sys.argv[1:])

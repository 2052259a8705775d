"""Lab-bench pre-training: the small classifiers that stand in for ImageNet's, trained by
fcnlib on :class:`~fcnlib.data.ShapesClassification` crops.

The weights of ``"tiny_vgg"``'s default recipe ship inside the package
(``fcnlib/weights/tiny_vgg-<recipe key>.pt``, with their SHA-256 checksum), so that every
machine, whatever its CPU model or GPU, Colab included, gets the same backbone bit for bit and
no runtime waits a minute for pre-training. Training cannot promise that by itself: on CUDA it is
not bit-reproducible (cuDNN's backward kernels accumulate in an order that varies from run to
run), and on CPUs the result depends on the thread count and can differ between CPU models (each
picks its own float kernels). The recipe (:class:`PretrainRecipe`) stays here and always trains
on the CPU, with a fixed thread count, so runs on one machine are bit-identical:
``pretrained_classifier("tiny_vgg", retrain=True)`` re-creates the weights (about a minute on
2 cores; cached under ``$FCN_CACHE/backbones``), and :func:`_write_shipped_weights` regenerates
the shipped file after a change to the recipe or the architecture. Other recipes and
``"tiny_vgg_wide"`` are trained the same way on first use and cached on disk.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fcnlib._io import atomic_torch_save, check_writable
from fcnlib.backbones import TinyVGG, backbone_spec, build_classifier
from fcnlib.config import cache_dir
from fcnlib.system import cpu_model, torch_threads

__all__ = ["PretrainRecipe", "pretrained_classifier"]


@dataclass(frozen=True)
class PretrainRecipe:
    """How a lab backbone is pre-trained: ShapesClassification crops, AdamW, on the CPU."""

    n_train: int = 8000
    n_val: int = 600
    epochs: int = 2
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    version: int = 1  # bump when the data generator or the architecture changes


# Lab backbones whose default recipe's weights ship inside the package, in fcnlib/weights/.
_SHIPPED = ("tiny_vgg",)
_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# CPU kernels split their reductions by thread, so the weights depend on the thread count:
# pre-training always uses this many (2, the CPUs of a Colab runtime).
_PRETRAIN_THREADS = 2


def _recipe_key(name: str, recipe: PretrainRecipe) -> str:
    text = repr((name, sorted(backbone_spec(name).kwargs.items()), sorted(asdict(recipe).items())))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _shipped_path(name: str) -> Path:
    """The shipped weights file of ``name``'s default recipe (it may not exist)."""
    return _WEIGHTS_DIR / f"{name}-{_recipe_key(name, PretrainRecipe())}.pt"


def _state_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _machine() -> str:
    """The CPU that ran a pre-training, for the record kept with the weights."""
    return f"{cpu_model()} (CPU, {_PRETRAIN_THREADS} threads)"


def _train_lab_classifier(
    name: str, recipe: PretrainRecipe, *, progress: bool
) -> tuple[nn.Module, float]:
    """Pre-train lab backbone ``name`` by ``recipe``, on the CPU, whatever devices exist: CUDA
    training is not bit-reproducible. Always :data:`_PRETRAIN_THREADS` threads. Leaves the
    caller's random number generators and thread count alone."""
    from fcnlib.data import ShapesClassification
    from fcnlib.progress import progress_bar

    spec = backbone_spec(name)
    size = spec.native_size
    # devices=[]: nothing runs on a GPU, so only the CPU generator is saved and restored
    with torch.random.fork_rng(devices=[]), torch_threads(_PRETRAIN_THREADS):
        gen = torch.Generator().manual_seed(recipe.seed)
        torch.default_generator.manual_seed(recipe.seed)  # initial weights and dropout
        net = TinyVGG(**spec.kwargs)
        train_x, train_y = ShapesClassification(
            "train", size=size, length=recipe.n_train, seed=recipe.seed
        ).materialize()
        val_x, val_y = ShapesClassification(
            "val", size=size, length=recipe.n_val, seed=recipe.seed
        ).materialize()
        steps = recipe.epochs * (recipe.n_train // recipe.batch_size)
        opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
        bar = progress_bar(total=steps, desc=f"pre-training {name} (CPU)", disable=not progress)
        for _ in range(recipe.epochs):
            net.train()
            order = torch.randperm(recipe.n_train, generator=gen)
            for s in range(recipe.n_train // recipe.batch_size):
                idx = order[s * recipe.batch_size : (s + 1) * recipe.batch_size]
                x, y = train_x[idx], train_y[idx]
                flip = torch.rand(len(idx), generator=gen) < 0.5  # mirroring keeps the class
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        net.eval()
        with torch.inference_mode():
            pred = torch.cat([net(val_x[i : i + 256]).argmax(1) for i in range(0, len(val_x), 256)])
    return net, float((pred == val_y).float().mean())


def _blob(name: str, recipe: PretrainRecipe, net: nn.Module, val_accuracy: float) -> dict:
    """What a weights file holds (the shipped file and the cache entries alike)."""
    state = net.state_dict()
    return {
        "key": _recipe_key(name, recipe),
        "name": name,
        "recipe": asdict(recipe),
        "state_dict": state,
        "digest": _state_digest(state),
        "val_accuracy": val_accuracy,
        "torch_version": str(torch.__version__),
        "made_on": _machine(),
    }


_BLOB_KEYS = frozenset({"key", "digest", "state_dict", "val_accuracy"})


def _read_weights(path: Path, name: str, key: str) -> tuple[nn.Module | None, str]:
    """The net stored at ``path``, or None and what is wrong with the file.

    Only a file that is damaged, of another kind, or made by another recipe or architecture is
    "unusable"; any other exception (a bug, a full disk, an interrupt) propagates, so that it is
    never mistaken for a stale file and answered by a silent retraining.
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError) as e:  # truncated, or not torch's
        return None, f"it could not be read ({type(e).__name__}: {e})"
    if not isinstance(blob, dict) or not blob.keys() >= _BLOB_KEYS:
        return None, f"it is not a weights file of fcnlib's (a dict with {sorted(_BLOB_KEYS)})"
    if blob["key"] != key:
        return None, "it was made by another recipe"
    state = blob["state_dict"]
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        return None, "its state_dict is not a dict of tensors"
    if _state_digest(state) != blob["digest"]:
        return None, "its weights do not match their checksum"
    net = TinyVGG(**backbone_spec(name).kwargs)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:  # missing, unexpected or differently shaped weights
        return None, f"its weights do not fit {name}'s architecture ({e})"
    net.val_accuracy = float(blob["val_accuracy"])
    return net.eval(), ""


def _load_shipped(name: str) -> nn.Module:
    path = _shipped_path(name)
    how = (
        "Reinstall fcnlib (pip install --force-reinstall --no-deps ...), or re-create the "
        f"weights from their recipe with pretrained_classifier({name!r}, retrain=True) (about "
        "a minute of CPU, cached under $FCN_CACHE/backbones); fcnlib's maintainers regenerate "
        f"the file with fcnlib.pretrain._write_shipped_weights({name!r})."
    )
    if not path.exists():
        raise RuntimeError(
            f"the weights of {name!r}'s default recipe should ship with fcnlib as {path}, but "
            "that file is missing: the installed package is damaged or incomplete, or the "
            f"recipe or the architecture changed without regenerating the file. {how}"
        )
    net, problem = _read_weights(path, name, _recipe_key(name, PretrainRecipe()))
    if net is None:
        raise RuntimeError(
            f"the weights shipped with fcnlib, {path}, are unusable: {problem}. The installed "
            f"fcnlib package is damaged. {how}"
        )
    return net


def pretrained_classifier(
    name: str = "tiny_vgg",
    *,
    cache: bool | str | os.PathLike = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    recipe: PretrainRecipe | None = None,
    retrain: bool = False,
) -> nn.Module:
    """A lab-bench classifier pre-trained on :class:`~fcnlib.data.ShapesClassification`.

    The default recipe's weights of ``"tiny_vgg"`` ship with fcnlib: they are loaded,
    checksum-verified, never trained (a damaged file is an error, not a silent retraining).
    Other recipes and backbones, and ``retrain=True``, run the recipe on the CPU (about a
    minute on 2 cores; the same weights whatever GPU is present) and cache the result under
    ``$FCN_CACHE/backbones`` (``cache`` may name another directory, or be False). A cache entry
    whose recipe, weights checksum or format does not match is reported and rebuilt, never
    loaded. The returned net is in eval mode; ``net.val_accuracy`` holds its held-out accuracy.

    Args:
        device: where the returned net lives (default: the CPU; ``"auto"``: see
            :func:`~fcnlib.config.pick_device`). It does not change the weights.
        retrain: re-create the weights from the recipe instead of loading the shipped ones
            (a valid cache entry of an earlier retraining is reused; ``cache=False`` always
            trains). The package's file is never overwritten.
    """
    spec = backbone_spec(name)
    if not spec.lab:
        return build_classifier(name, pretrained=True, progress=progress)
    recipe = recipe or PretrainRecipe()
    if name in _SHIPPED and recipe == PretrainRecipe() and not retrain:
        net = _load_shipped(name)
    else:
        net = _cached_or_trained(name, recipe, cache=cache, progress=progress)
    if device is None:
        return net
    from fcnlib.config import pick_device

    return net.to(pick_device(device))


def _cached_or_trained(
    name: str, recipe: PretrainRecipe, *, cache: bool | str | os.PathLike, progress: bool
) -> nn.Module:
    key = _recipe_key(name, recipe)
    folder = None if cache is False else (
        cache_dir() / "backbones" if cache is True else Path(cache)
    )  # fmt: skip
    path = None if folder is None else folder / f"{name}-{key}.pt"
    if path is not None and path.exists():
        net, problem = _read_weights(path, name, key)
        if net is not None:
            return net
        warnings.warn(
            f"cached backbone {path} is unusable: {problem}; training it again", stacklevel=3
        )
    if folder is not None:
        _check_writable(folder)  # before a minute of training, not after it
    net, acc = _train_lab_classifier(name, recipe, progress=progress)
    net.val_accuracy = acc
    if path is not None:
        atomic_torch_save(_blob(name, recipe, net, acc), path)
    return net.eval()


def _check_writable(folder: Path) -> None:
    """PermissionError (what to do included) unless the cache ``folder`` can take a file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        check_writable(folder)
    except OSError as e:
        raise PermissionError(
            f"cannot write the pre-trained backbone's cache folder {folder} "
            f"($FCN_CACHE/backbones; {e.strerror or e}): set FCN_CACHE to a folder you can "
            "write, or pass cache=False to train it without keeping it"
        ) from e


def _write_shipped_weights(name: str = "tiny_vgg", *, progress: bool = True) -> Path:
    """Train ``name`` by its default recipe (on the CPU) and write the file fcnlib ships,
    replacing the one of an older recipe. For fcnlib's maintainers, after a change to the
    recipe, the data generator or the architecture (bump ``PretrainRecipe.version``)::

        python -c "from fcnlib.pretrain import _write_shipped_weights as w; w()"
    """
    if name not in _SHIPPED:
        raise ValueError(f"fcnlib ships weights only for {_SHIPPED}, not {name!r}")
    recipe = PretrainRecipe()
    net, acc = _train_lab_classifier(name, recipe, progress=progress)
    path = atomic_torch_save(_blob(name, recipe, net, acc), _shipped_path(name))
    path.chmod(0o644)  # a package file: readable by all (the temporary file it was is not)
    for old in path.parent.glob(f"{name}-*.pt"):
        if old != path:
            old.unlink()
    return path

"""Export to ONNX: trained FCNs as files that run without PyTorch, in a browser too.

:func:`export_onnx` writes one net as an ONNX model that takes images of any batch size and any
height and width, as the net itself does. :func:`write_live_assets` writes what a page of the
book needs to run the lab's nets in the reader's browser with onnxruntime-web
(``book/_static/live/``): the models, a bank of lab scenes with their ground truth, each net's
labels on them as PyTorch computes them (for the page to compare with its own), the class names
and colours. A page opened from disk (``file://``) may not ``fetch()`` files beside it, but it
may load scripts: :func:`write_files_script` wraps a file's bytes in one
(``<script src="fcn8s.onnx.js">``), and the bank comes in both forms.

onnx and onnxruntime are imported inside the functions that need them: importing this module
loads neither.

>>> import tempfile
>>> from fcnlib.models import fcn8s
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = export_onnx(fcn8s("tiny_vgg", n_classes=7), Path(tmp, "fcn8s.onnx"))
...     print(path.name, f"{path.stat().st_size / 1e6:.1f} MB")
fcn8s.onnx 3.3 MB
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fcnlib._io import atomic_write, atomic_write_text
from fcnlib.data.labels import IGNORE_INDEX, save_label_png, voc_palette
from fcnlib.data.shapes import CLASSES, ShapesDataset
from fcnlib.modes import eval_mode

if TYPE_CHECKING:
    from fcnlib.models import FCN

__all__ = [
    "BANK_FORMAT",
    "CHECK_SIZES",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "browser_net",
    "export_onnx",
    "onnx_bytes",
    "write_files_script",
    "write_live_assets",
]

INPUT_NAME, OUTPUT_NAME = "image", "logits"  # the graph's input and output, by name
# Traced at the first; checked at all three: a non-square size, odd sizes that no stride
# divides, a square one. A graph that works only at the traced size fails the second.
CHECK_SIZES = ((64, 96), (37, 50), (128, 128))
_TOLERANCE = 1e-4  # max |logit difference| allowed between the file and the net


def _require(module: str, why: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ModuleNotFoundError(
            f"{why} needs the {module!r} package, which is not installed: pip install {module} "
            "(or pip install -r requirements.txt for the course's tools)"
        ) from err


def _check_float32(model: torch.nn.Module) -> None:
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        found = ", ".join(sorted(str(d) for d in dtypes)) or "no parameters"
        raise ValueError(
            f"export_onnx writes float32 models, the precision onnxruntime-web runs; this net's "
            f"weights are {found}: export model.float()"
        )


class _WithStages(torch.nn.Module):
    """``net``'s logits, then the intermediate maps ``names`` of :meth:`FCN.score_maps`."""

    def __init__(self, net: FCN, names: Sequence[str]) -> None:
        super().__init__()
        self.net, self.names = net, tuple(names)
        self.in_channels = net.in_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.net.score_maps(x)
        return (maps["score"], *(maps[name] for name in self.names))


def _trace(model: torch.nn.Module, *, opset: int, outputs: Sequence[str]) -> bytes:
    """The ONNX bytes of ``model`` traced on a zero image of ``CHECK_SIZES[0]``."""
    _require("onnx", "export_onnx")
    device = next(model.parameters()).device
    example = torch.zeros(1, model.in_channels, *CHECK_SIZES[0], device=device)
    dynamic = {0: "N", 2: "H", 3: "W"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), eval_mode(model), torch.no_grad():
        # The TorchScript exporter warns that it is the legacy one and, for each shape check in
        # forward, that tracing records it as a constant: _check_sizes verifies the result.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_axes={INPUT_NAME: dynamic} | {name: dynamic for name in outputs},
        )
    return buffer.getvalue()


def _half_weights(onnx_bytes: bytes, *, required: bool) -> bytes:
    """Store each float32 weight that float16 holds exactly as float16, cast back to float32
    at the start of the graph: half the bytes, the same arithmetic. ``required``: raise if a
    large weight is not exactly a float16 (round the net first: :func:`browser_net`)."""
    onnx = _require("onnx", "export_onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph_model = onnx.load_from_string(onnx_bytes)
    graph = graph_model.graph
    kept, casts = [], []
    for init in graph.initializer:
        values = numpy_helper.to_array(init) if init.data_type == TensorProto.FLOAT else None
        if values is None or values.size < 16:  # scalars and shapes stay as they are
            kept.append(init)
            continue
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):
            if required:
                raise ValueError(
                    f"weight {init.name!r} is not exactly a float16: export browser_net(net), "
                    "whose weights are rounded to float16, or export with half=False"
                )
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(half, f"{init.name}.f16"))
        casts.append(
            helper.make_node("Cast", [f"{init.name}.f16"], [init.name], to=TensorProto.FLOAT)
        )
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return graph_model.SerializeToString()


def _check_sizes(
    model: torch.nn.Module, onnx_bytes: bytes, sizes: Sequence[tuple[int, int]]
) -> None:
    """Raise RuntimeError unless onnxruntime's outputs match the net's at each size."""
    ort = _require("onnxruntime", "export_onnx's check of the file it writes")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # small inputs: threads would only wait on each other
    options.log_severity_level = 4  # a failing run is reported below, not also in the log
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    g = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    for h, w in sizes:
        x = torch.rand(2, model.in_channels, h, w, generator=g)
        with eval_mode(model), torch.no_grad():
            out = model(x.to(device))
        expected = [t.cpu().numpy() for t in (out if isinstance(out, tuple) else [out])]
        try:
            got = session.run(names, {INPUT_NAME: x.numpy()})
        except Exception as err:  # onnxruntime's own classes (Fail, InvalidArgument, ...)
            reason = " ".join(str(err).split())  # one line
            raise RuntimeError(
                f"the ONNX graph fails on images of {h} x {w} ({reason}): the trace kept a size "
                "that depends on the input as a constant (a decision taken in Python in "
                "forward); no file was written"
            ) from err
        for name, out, ref in zip(names, got, expected, strict=True):
            if out.shape != ref.shape:
                raise RuntimeError(
                    f"the ONNX graph gives {name} of shape {out.shape} for images of {h} x {w}, "
                    f"the net {ref.shape}: the trace kept a size that depends on the input as a "
                    "constant (a decision taken in Python in forward); no file was written"
                )
            diff = float(abs(out - ref).max())
            if not diff <= _TOLERANCE:  # not <=: also catches nan
                raise RuntimeError(
                    f"the ONNX graph's {name} differ from the net's by up to {diff:.3g} (allowed "
                    f"{_TOLERANCE:g}) on images of {h} x {w}: the trace kept a value that "
                    "depends on the input as a constant, or an operator differs; no file was "
                    "written"
                )


def onnx_bytes(
    model: FCN,
    *,
    opset: int = 17,
    check: bool = True,
    stages: bool = False,
    half: bool = False,
) -> bytes:
    """The bytes :func:`export_onnx` writes (see there for the arguments)."""
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 9:
        raise ValueError(f"opset must be an int >= 9 (FCN's ops need 9 at least), got {opset!r}")
    _check_float32(model)
    traced: torch.nn.Module = model
    outputs = [OUTPUT_NAME]
    if stages:
        traced = _WithStages(model, model.fusion_stages())
        outputs += traced.names
    data = _trace(traced, opset=opset, outputs=outputs)
    if half:
        data = _half_weights(data, required=True)
    if check:
        _check_sizes(traced, data, CHECK_SIZES)
    return data


def export_onnx(
    model: FCN,
    path: str | os.PathLike,
    *,
    opset: int = 17,
    check: bool = True,
    stages: bool = False,
    half: bool = False,
) -> Path:
    """Write ``model`` to ``path`` as an ONNX model with dynamic batch size, height and width.

    The graph's input ``"image"`` is float32 ``(N, in_channels, H, W)``, RGB in [0, 1] as the
    net takes it (its normalisation is inside the graph); its output ``"logits"`` is float32
    ``(N, n_classes, H, W)``. Any ``H, W >= 1`` works, as for the net: the lab nets
    (``align="same"``) pad every layer, so no size is too small or indivisible by the stride.
    Batch norm is folded into the convolutions (the net is exported in eval mode; its
    train/eval flags are left as they were): a lab FCN (tiny_vgg, 7 classes) is about 3.4 MB
    with float32 weights, whatever its stride.

    ``stages`` adds, after ``"logits"``, the class-score maps of :meth:`FCN.fusion_stages` as
    outputs named as :meth:`FCN.score_maps` names them (FCN-8s: ``score_fr`` at stride 32,
    ``upscore2``, ``score_pool4``, ``fuse_pool4`` at 16, ... ``fuse_pool3`` at 8): how the
    live page shows the fusion step by step. ``half`` stores the weights as float16 (half the
    bytes; the graph casts them back and computes in float32): every weight must already be a
    float16 value, as in :func:`browser_net`'s copy of a net, so the file computes exactly
    what that copy computes.

    ``check`` (default) runs the file with onnxruntime before writing it and compares every
    output with the net's at the sizes of :data:`CHECK_SIZES` (within 1e-4): a graph that
    works only at the size it was traced at raises RuntimeError and writes nothing. The file
    is written atomically: a failed export leaves what ``path`` held before.

    Why the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) and not the
    torch.export-based one: it needs only the ``onnx`` package (the other also onnxscript),
    exports a lab net in about 0.1 s (the other: about 5 s), runs on every torch fcnlib supports
    (from 2.3), and writes IR version 8, which the book's onnxruntime-web (1.18) reads. Both
    gave files of the same size and the same logits (within 5e-6) on torch 2.14. Tracing
    records what forward did on the example: a decision taken in Python on a size becomes a
    constant. FCN's forward keeps its size arithmetic in tensor operations (its skips are cut
    to each other's size by slicing), and the check above catches a net whose forward does not.

    Args:
        model: an :class:`~fcnlib.models.FCN` (or, without ``stages``, any module mapping
            images to logits with an ``in_channels`` attribute), float32, on any device.
        path: where to write, usually ``*.onnx``; missing folders are created.
        opset: the ONNX operator set (17 reads in onnxruntime 1.14 and later, browsers too).
        check: run the file with onnxruntime (CPU) before writing it.
        stages: also output the score maps of the skip fusion.
        half: store the weights as float16 (they must be float16 values already).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    data = onnx_bytes(model, opset=opset, check=check, stages=stages, half=half)
    return atomic_write(lambda f: f.write(data), Path(path))


def browser_net(net: FCN) -> FCN:
    """A copy of ``net`` as the live pages run it: each batch norm folded into the convolution
    before it, then every weight rounded to the nearest float16; in eval mode, on the CPU (as
    the page computes: float32, no TF32). The arithmetic stays float32: :func:`export_onnx`
    with ``half=True`` stores these weights in half the bytes, so the file computes what this
    copy computes (within 1e-4) and the page's labels can be checked against it. How far the
    rounding moves the labels from ``net``'s is measured by :func:`write_live_assets`
    (``bank.json``: ``agreement_with_float32``)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    copy = deepcopy(net).cpu().eval()
    for module in copy.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, norm = module[i], module[i + 1]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
                module[i], module[i + 1] = fuse_conv_bn_eval(conv, norm), torch.nn.Identity()
    with torch.no_grad():
        for tensor in [*copy.parameters(), *copy.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return copy


# ----------------------------------------------------------------------------------------------
# The live pages' assets
# ----------------------------------------------------------------------------------------------

BANK_FORMAT = "fcnlib-live-bank/2"  # bank.json's "format": a page checks it before reading on
# The global that the scripts of write_files_script fill: file name -> its bytes, gzip, base64.
_FILES_GLOBAL = "fcnLiveFiles"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def write_files_script(path: str | os.PathLike, files: Mapping[str, bytes]) -> Path:
    """Write a JavaScript file that, loaded with ``<script src=...>``, puts each of ``files``
    in the page as ``self.fcnLiveFiles[name]``: the bytes gzip-compressed, then base64.

    A page opened from disk (``file://``) may load scripts beside it but not ``fetch()``
    files: this is how it gets a model, a scene or onnxruntime's WebAssembly. The page
    decodes with ``atob`` and ``DecompressionStream("gzip")`` (``book/_static/live/segment.js``).
    Base64 adds a third to the compressed size. Names are file names (letters, digits,
    ``_ . -``, and ``/`` between folders).
    """
    lines = [
        "// Files for a page opened from disk, where fetch() may not read them: each one's",
        "// bytes, gzip-compressed, then base64. Written by fcnlib.export.write_files_script.",
        f"self.{_FILES_GLOBAL} = self.{_FILES_GLOBAL} || {{}};",
    ]
    for name, data in files.items():
        if not all(_NAME.fullmatch(part) for part in name.split("/")):
            raise ValueError(
                f"{name!r} is not a file name a page can ask for: use letters, digits, '_', '.', "
                "'-', and '/' between folders"
            )
        packed = base64.b64encode(gzip.compress(bytes(data), mtime=0)).decode("ascii")
        lines.append(f'self.{_FILES_GLOBAL}["{name}"] = "{packed}";')
    return atomic_write_text("\n".join(lines) + "\n", path)


def _check_nets(models: Mapping[str, torch.nn.Module]) -> None:
    if not models:
        raise ValueError("write_live_assets needs at least one net, e.g. {'FCN-8s': net}")
    for name, net in models.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"net name {name!r} names its files: use letters, digits, '_', '.', '-' "
                "(e.g. 'FCN-8s')"
            )
        n_classes, channels = getattr(net, "n_classes", None), getattr(net, "in_channels", None)
        if n_classes != len(CLASSES) or channels != 3:
            raise ValueError(
                f"the bank's scenes are the lab bench's: RGB, {len(CLASSES)} classes "
                f"({', '.join(CLASSES)}); net {name!r} takes {channels} channels and scores "
                f"{n_classes} classes. Build it with fcn('tiny_vgg', n_classes=len(CLASSES))"
            )


def _quantized_scenes(split: str, size: int, scenes: int, seed: int) -> tuple:
    """The bank's scenes as the page sees them: 8-bit RGB (what a PNG holds), and the same
    as float ``(N, 3, H, W)`` in [0, 1], with their ground truth ``(N, H, W)``."""
    images, truth = ShapesDataset(split, size=size, length=scenes, seed=seed).materialize()
    rgb8 = (images * 255).round().clamp(0, 255).to(torch.uint8)  # (N, 3, H, W)
    return rgb8, rgb8.float() / 255, truth


def _predict(net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    device = next(net.parameters()).device
    with eval_mode(net), torch.no_grad():
        return torch.cat([net(b.to(device)).argmax(1).cpu() for b in images.split(8)])


def _fallback_figure(image: torch.Tensor, maps: dict[str, torch.Tensor]) -> Any:
    """One row, PNG: the scene, then each label map in the lab's colours, names underneath.
    What a page shows where the nets cannot run (no WebAssembly). A PIL image."""
    from PIL import Image, ImageDraw

    palette = voc_palette()  # also colours void (255) as VOC does
    tiles = [("scene", image.permute(1, 2, 0))] + [(k, palette[v]) for k, v in maps.items()]
    h, w = image.shape[-2:]
    gap, caption = 8, 16
    figure = Image.new("RGB", (len(tiles) * (w + gap) - gap, h + caption), "white")
    draw = ImageDraw.Draw(figure)
    for i, (title, tile) in enumerate(tiles):
        figure.paste(Image.fromarray(tile.numpy()), (i * (w + gap), 0))
        draw.text((i * (w + gap) + 2, h + 3), title, fill="black")
    return figure


def _png(save: Any) -> bytes:
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


def _scene_files(
    rgb8: torch.Tensor, truth: torch.Tensor, labels: dict[str, torch.Tensor]
) -> tuple[list[dict], dict[str, bytes]]:
    """bank.json's entry for each scene, and the PNGs they name (file name -> bytes)."""
    from PIL import Image

    entries, files = [], {}
    for k in range(len(rgb8)):
        entry = {"image": f"scenes/{k:03d}.png", "truth": f"scenes/{k:03d}.truth.png"}
        entry["labels"] = {name: f"scenes/{k:03d}.{name}.png" for name in labels}
        image = Image.fromarray(rgb8[k].permute(1, 2, 0).numpy())
        files[entry["image"]] = _png(lambda f, image=image: image.save(f, format="PNG"))
        maps = {entry["truth"]: truth[k]} | {entry["labels"][n]: v[k] for n, v in labels.items()}
        for file, label in maps.items():
            files[file] = _png(lambda f, label=label: save_label_png(label, f))
        entries.append(entry)
    return entries, files


def _net_files(folder: Path, name: str, net: FCN) -> dict[str, Any]:
    """Write ``NAME.onnx.js`` (the model, float16 weights, with its fusion stages as outputs,
    in a script); return bank.json's entry for the net."""
    model = onnx_bytes(net, stages=True, half=True)
    write_files_script(folder / f"{name}.onnx.js", {f"{name}.onnx": model})
    return {
        "name": name,
        "stride": getattr(net, "stride", None),
        "model": f"{name}.onnx",
        "script": f"{name}.onnx.js",
        "outputs": [OUTPUT_NAME, *net.fusion_stages()],
        "weights": "float16",
        "bytes": len(model),
        "sha256": hashlib.sha256(model).hexdigest(),
    }


def _fusion_figure(net: FCN, image: torch.Tensor) -> Any:
    """The fallback of the fusion demo: ``image`` and the labels of each of ``net``'s fused
    score maps, coarse to fine, then its output, each map's cells drawn as blocks."""
    with torch.no_grad():
        maps = net.score_maps(image[None].float() / 255)
    names = [n for n in net.fusion_stages() if n == "score_fr" or n.startswith("fuse_")]
    h, w = image.shape[-2:]
    labels = {}
    for name in [*names, "score"]:
        coarse = maps[name].argmax(1, keepdim=True).float()
        labels[name if name != "score" else "output"] = torch.nn.functional.interpolate(
            coarse, size=(h, w), mode="nearest"
        )[0, 0].long()
    return _fallback_figure(image, labels)


def _explorers(folder: Path, net: FCN, image: torch.Tensor) -> list[str]:
    """Write the explorers' data for ``net`` (the finest) on ``image``; return their files."""
    from fcnlib._live_fields import write_fields_assets
    from fcnlib._live_upsampling import write_upsampling_assets

    write_fields_assets(folder, net, image)
    files = ["fields.js", "fields-fallback.png"]
    if net.stride == 8:  # shift-and-stitch of its stride-8 scores
        write_upsampling_assets(folder, net, image)
        files += ["upsampling.js", "upsampling-fallback.png"]
    return files


def write_live_assets(
    folder: str | os.PathLike,
    models: Mapping[str, FCN],
    *,
    scenes: int = 24,
    seed: int = 0,
    size: int = 128,
    split: str = "test",
) -> Path:
    """Write the files of the live pages' scene bank into ``folder``; return ``bank.json``'s
    path.

    Each net of ``models`` (e.g. ``{"FCN-32s": net32, "FCN-16s": net16, "FCN-8s": net8}``,
    lab nets: RGB, the 7 classes of :data:`fcnlib.data.CLASSES`) goes to the page as
    :func:`browser_net` makes it (batch norm folded, weights rounded to float16) and as
    ``NAME.onnx.js``: the ONNX model (:func:`export_onnx` with ``stages`` and ``half``) in a
    script (:func:`write_files_script`), which a page loads from a server or from disk alike.
    For each of ``scenes`` lab scenes (``split``, ``seed``, ``size`` x ``size``), numbered
    ``k`` = 000, 001, ..., three kinds of PNG, in ``bank.js`` only: ``scenes/k.png``, the image
    (8-bit RGB); ``scenes/k.truth.png``, its ground truth; ``scenes/k.NAME.png``, each net's
    labels computed by PyTorch (the browser copy) on the 8-bit image, as the page computes
    them. Label maps are palette PNGs of class
    ids (:func:`fcnlib.data.labels.save_label_png`; void 255), in VOC's colours as in the
    chapters' figures. Then:

    - ``bank.json``: ``format`` (:data:`BANK_FORMAT`), ``classes``, ``colors`` (one RGB per
      class: VOC's palette, as :func:`fcnlib.viz.colorize` draws them), ``void`` (id and
      colour), the graphs' ``input`` and ``output`` names, ``size``, ``split``, ``seed``,
      ``nets`` (name, stride, model and script files, outputs, size and SHA-256 of the model,
      and ``agreement_with_float32``: the share of the bank's pixels that the browser copy
      labels as the net itself does), ``scenes`` (each one's image, truth and labels files)
      and ``files``, the other demos' data, from the finest net and scene 0:
      ``fusion-fallback.png`` (the fusion's stages, for a page that cannot run it), ``fields.js``
      and ``fields-fallback.png`` (:func:`fcnlib._live_fields.write_fields_assets`) and, for
      a net of stride 8, ``upsampling.js`` and ``upsampling-fallback.png``
      (:func:`fcnlib._live_upsampling.write_upsampling_assets`);
    - ``bank.js``: bank.json and every PNG above as one script (:func:`write_files_script`);
    - ``fallback.png``: scene 0, its ground truth and each net's labels in one row, for a page
      that cannot run the nets.

    bank.json is written last: a folder with one holds a complete bank. About 2.2 MB per net
    and 50 kB per scene (128 x 128).
    """
    _check_nets(models)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rgb8, images, truth = _quantized_scenes(split, size, scenes, seed)
    browser = {name: browser_net(net) for name, net in models.items()}
    labels = {name: _predict(net, images) for name, net in browser.items()}
    entries, pngs = _scene_files(rgb8, truth, labels)
    nets = []
    for name, net in browser.items():
        entry = _net_files(folder, name, net)
        same = (_predict(models[name], images) == labels[name]).float().mean()
        nets.append(entry | {"agreement_with_float32": round(float(same), 6)})
    first = {"ground truth": truth[0]} | {name: v[0] for name, v in labels.items()}
    _fallback_figure(rgb8[0], first).save(folder / "fallback.png")
    finest = min(browser.values(), key=lambda net: net.stride)
    _fusion_figure(finest, rgb8[0]).save(folder / "fusion-fallback.png")
    files = ["fusion-fallback.png", *_explorers(folder, finest, rgb8[0])]
    palette = voc_palette()
    bank = {
        "format": BANK_FORMAT,
        "classes": list(CLASSES),
        "colors": palette[: len(CLASSES)].tolist(),
        "void": {"id": IGNORE_INDEX, "color": palette[IGNORE_INDEX].tolist()},
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "size": [size, size],
        "split": split,
        "seed": seed,
        "nets": nets,
        "scenes": entries,
        "files": files,
    }
    text = json.dumps(bank, indent=1)
    write_files_script(folder / "bank.js", {"bank.json": text.encode()} | pngs)
    return atomic_write_text(text + "\n", folder / "bank.json")

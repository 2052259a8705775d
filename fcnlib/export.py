"""Export to ONNX: a trained FCN as a file that runs without PyTorch, in a browser too.

:func:`export_onnx` writes one net as an ONNX model that takes images of any batch size and any
height and width, as the net itself does. The book runs such files in the reader's browser with
onnxruntime-web (``book/_static/live/``).

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

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fcnlib._io import atomic_write
from fcnlib.modes import eval_mode

if TYPE_CHECKING:
    from fcnlib.models import FCN

__all__ = ["CHECK_SIZES", "INPUT_NAME", "OUTPUT_NAME", "export_onnx"]

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


def _trace(model: FCN, *, opset: int) -> bytes:
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
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
        )
    return buffer.getvalue()


def _check_sizes(model: FCN, onnx_bytes: bytes, sizes: Sequence[tuple[int, int]]) -> None:
    """Raise RuntimeError unless onnxruntime's logits match the net's at each size."""
    ort = _require("onnxruntime", "export_onnx's check of the file it writes")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # small inputs: threads would only wait on each other
    options.log_severity_level = 4  # a failing run is reported below, not also in the log
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    for h, w in sizes:
        x = torch.rand(2, model.in_channels, h, w, generator=g)
        with eval_mode(model), torch.no_grad():
            expected = model(x.to(device)).cpu().numpy()
        try:
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        except Exception as err:  # onnxruntime's own classes (Fail, InvalidArgument, ...)
            reason = " ".join(str(err).split())  # one line
            raise RuntimeError(
                f"the ONNX graph fails on images of {h} x {w} ({reason}): the trace kept a size "
                "that depends on the input as a constant (a decision taken in Python in "
                "forward); no file was written"
            ) from err
        if got.shape != expected.shape:
            raise RuntimeError(
                f"the ONNX graph gives logits of shape {got.shape} for images of {h} x {w}, the "
                f"net {expected.shape}: the trace kept a size that depends on the input as a "
                "constant (a decision taken in Python in forward); no file was written"
            )
        diff = float(abs(got - expected).max())
        if not diff <= _TOLERANCE:  # not <=: also catches nan
            raise RuntimeError(
                f"the ONNX graph's logits differ from the net's by up to {diff:.3g} (allowed "
                f"{_TOLERANCE:g}) on images of {h} x {w}: the trace kept a value that depends "
                "on the input as a constant, or an operator differs; no file was written"
            )


def export_onnx(
    model: FCN,
    path: str | os.PathLike,
    *,
    opset: int = 17,
    check: bool = True,
) -> Path:
    """Write ``model`` to ``path`` as an ONNX model with dynamic batch size, height and width.

    The graph's input ``"image"`` is float32 ``(N, in_channels, H, W)``, RGB in [0, 1] as the
    net takes it (its normalisation is inside the graph); its output ``"logits"`` is float32
    ``(N, n_classes, H, W)``. Any ``H, W >= 1`` works, as for the net: the lab nets
    (``align="same"``) pad every layer, so no size is too small or indivisible by the stride.
    Weights are float32 and batch norm is folded into the convolutions (the net is exported in
    eval mode; its train/eval flags are left as they were): a lab FCN (tiny_vgg, 7 classes) is
    about 3.4 MB, whatever its stride.

    ``check`` (default) runs the file with onnxruntime before writing it and compares its
    logits with the net's at the sizes of :data:`CHECK_SIZES` (within 1e-4): a graph that
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
        model: an :class:`~fcnlib.models.FCN` (or any module mapping images to logits with an
            ``in_channels`` attribute), float32, on any device.
        path: where to write, usually ``*.onnx``; missing folders are created.
        opset: the ONNX operator set (17 reads in onnxruntime 1.14 and later, browsers too).
        check: run the file with onnxruntime (CPU) before writing it.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 9:
        raise ValueError(f"opset must be an int >= 9 (FCN's ops need 9 at least), got {opset!r}")
    _check_float32(model)
    onnx_bytes = _trace(model, opset=opset)
    if check:
        _check_sizes(model, onnx_bytes, CHECK_SIZES)
    return atomic_write(lambda f: f.write(onnx_bytes), Path(path))

"""Mixed precision: the dtype a run computes in, decided once per run and recorded.

``amp`` (a :class:`~fcnlib.recipes.TrainConfig` field) names a wish: ``"auto"``, ``"bf16"``,
``"fp16"`` or ``"off"``. :func:`resolve_amp` turns it into what the hardware at hand does:
a dtype for :func:`torch.autocast`, or None for float32. :func:`fcnlib.train.fit` resolves it
once, before the first step, and stores the answer in every checkpoint
(:func:`precision_name`), so that a run resumed on another machine, where ``"auto"`` would pick
something else, keeps its precision or is refused with a message instead of changing it
silently.

>>> resolve_amp("cpu", "bf16"), precision_name(resolve_amp("cpu", "off"))
(torch.bfloat16, 'float32')
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = [
    "AMP_CHOICES",
    "amp_setting",
    "autocast_context",
    "make_grad_scaler",
    "precision_dtype",
    "precision_name",
    "resolve_amp",
]

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
CPU_BF16_ENV = "FCN_CPU_BF16"
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "float32"}


def cuda_has_native_bf16(device: torch.device | str = "cuda") -> bool:
    """True on CUDA GPUs of compute capability 8.0 or newer (Ampere on), whose tensor cores do bf16.

    ``torch.cuda.is_bf16_supported()`` is not the test: it also counts emulation, so it says True
    on a Tesla T4 (capability 7.5, Colab's free GPU), where bf16 runs emulated and slow while its
    tensor cores do fp16. ``device`` may name an index (``"cuda:1"``); without one, the current
    device is asked.
    """
    return torch.cuda.get_device_capability(torch.device(device).index) >= (8, 0)


def cpu_bf16_override() -> bool | None:
    """``FCN_CPU_BF16``: "1" -> True, "0" -> False, unset or empty -> None (float32)."""
    value = os.environ.get(CPU_BF16_ENV, "").strip()
    if not value:
        return None
    if value not in ("0", "1"):
        raise ValueError(
            f"{CPU_BF16_ENV} must be '1' (bf16), '0' (float32) or unset/empty (float32), "
            f"got {value!r}"
        )
    return value == "1"


def resolve_amp(device: torch.device | str, amp: str) -> torch.dtype | None:
    """The autocast dtype that ``amp`` means on ``device``, or None for float32.

    "auto" picks the precision the hardware computes natively:

    * CUDA: bf16 on GPUs of compute capability >= 8.0 (Ampere and later), else fp16 (with a
      GradScaler, see :func:`make_grad_scaler`). The capability of ``device``'s own index is
      asked (:func:`cuda_has_native_bf16`).
    * CPU: float32. bf16 autocast was measured slower than float32 for the course's nets on
      every CPU tried, those with Intel's AMX tiles included (FCN-32s and FCN-8s on the lab
      bench, 2 threads: 1.5x slower per epoch; Chapter 5 in 864 s against 346 s), and
      a result that depended on which CPU ran it would be worse still. The environment variable
      ``FCN_CPU_BF16`` = "1" makes "auto" pick bf16 on the CPU (the tests use it to run a
      chapter on the bf16 path), "0" or unset/empty keeps float32; any other value raises
      ValueError.
    * Anything else (MPS included): off.

    "bf16"/"fp16" force a dtype and "off" disables, on any device and whatever ``FCN_CPU_BF16``
    says.
    """
    device = torch.device(device)
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")
    if amp == "off":
        return None
    if amp != "auto":
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16_override() else None
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """``"bf16"``, ``"fp16"`` or ``"float32"`` (for None): how checkpoints record a run's
    precision, and an ``amp`` value that forces it again (``"float32"`` is ``amp="off"``)."""
    return _NAMES[dtype]


def precision_dtype(name: str) -> torch.dtype | None:
    """The dtype that :func:`precision_name` called ``name`` (None for ``"float32"``)."""
    for dtype, known in _NAMES.items():
        if known == name:
            return dtype
    raise ValueError(f"precision must be one of {sorted(_NAMES.values())}, got {name!r}")


def amp_setting(name: str) -> str:
    """The ``amp`` setting that computes in precision ``name`` (:func:`precision_name`) on any
    machine: ``"bf16"``, ``"fp16"``, or ``"off"`` for ``"float32"``.

    >>> amp_setting("float32"), amp_setting("bf16")
    ('off', 'bf16')
    """
    precision_dtype(name)  # a known name, else ValueError
    return "off" if name == "float32" else name


def _dtype(device: torch.device | str, amp: str | torch.dtype | None) -> torch.dtype | None:
    return resolve_amp(device, amp) if isinstance(amp, str) else amp


def autocast_context(
    device: torch.device | str, amp: str | torch.dtype | None
) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``amp`` on ``device``, or a no-op for float32. ``amp`` is an
    ``amp`` setting (resolved here, see :func:`resolve_amp`) or a dtype resolved before (None:
    float32); a loop resolves once and passes the dtype."""
    dtype = _dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def make_grad_scaler(
    device: torch.device | str, amp: str | torch.dtype | None
) -> torch.amp.GradScaler | None:
    """A GradScaler when ``amp`` (a setting or a resolved dtype) means fp16, whose gradients
    underflow without loss scaling; else None."""
    if _dtype(device, amp) != torch.float16:
        return None
    return torch.amp.GradScaler(torch.device(device).type)

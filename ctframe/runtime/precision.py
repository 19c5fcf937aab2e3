"""Mixed precision: what a precision setting means on a device, and the one autocast helper.

The trainer owns the training precision (``[trainer] precision``), the core owns the precision of
every prediction it reports (``[evaluation] precision``, fp32 by default), so that one recipe and
seed report the same numbers on every CPU. Backbones run in whatever the caller opens.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

NATIVE_BF16_ENV = "CTFRAME_NATIVE_BF16"
"""``1`` or ``0`` overrides the CPU bf16 detection, so both answers of ``auto`` can be tested on any
machine (forced on where bf16 is emulated, bf16 still runs, only slowly)."""

_CPU_CHECKS = {"_is_avx512_bf16_supported": "AVX512-BF16", "_is_amx_tile_supported": "AMX"}


def _forced_native() -> bool | None:
    value = os.environ.get(NATIVE_BF16_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def cpu_bf16_features() -> list[str]:
    """Native bf16 instruction sets of this CPU, as torch detects them (``[]``: emulated bf16)."""
    return [name for check, name in _CPU_CHECKS.items() if getattr(torch.cpu, check, lambda: False)()]


def native_cpu_bf16() -> bool:
    """True when the CPU runs bf16 natively (AVX512-BF16 or AMX), or ``$CTFRAME_NATIVE_BF16`` says so."""
    forced = _forced_native()
    return forced if forced is not None else bool(cpu_bf16_features())


@dataclass(frozen=True)
class Resolution:
    """What a precision setting became on a device, and why (recorded in ``environment.json``)."""

    requested: str
    resolved: str
    """``"fp32"``, ``"bf16"`` or ``"fp16"``."""
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"requested": self.requested, "resolved": self.resolved, "reason": self.reason}


def _auto_on_cpu() -> Resolution:
    forced = _forced_native()
    if forced is not None:
        resolved = "bf16" if forced else "fp32"
        return Resolution("auto", resolved, f"${NATIVE_BF16_ENV}={os.environ[NATIVE_BF16_ENV]} forces it")
    features = cpu_bf16_features()
    if features:
        return Resolution("auto", "bf16", f"CPU runs bf16 natively ({', '.join(features)})")
    return Resolution("auto", "fp32", "CPU lacks native bf16 (no AVX512-BF16 or AMX); bf16 is emulated")


def resolve(precision: str, device: str) -> Resolution:
    """Resolve ``precision`` for ``device`` (``"cpu"``, ``"cuda:1"``...).

    ``"auto"`` picks bf16 only where the hardware runs it natively (CUDA with bf16, CPUs with
    AVX512-BF16 or AMX), never fp16: fp16 training needs loss scaling that plain autocast lacks.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return Resolution(precision, precision, "set explicitly")
    device_type = device.split(":")[0]
    if device_type == "cuda":
        capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
        if torch.cuda.is_bf16_supported():
            return Resolution("auto", "bf16", f"CUDA device with bf16 (compute capability {capability})")
        return Resolution("auto", "fp32", f"CUDA device without bf16 (compute capability {capability})")
    if device_type == "cpu":
        return _auto_on_cpu()
    return Resolution("auto", "fp32", f"no bf16 policy for device type {device_type!r}")


_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    """The autocast dtype ``precision`` means on ``device``; ``None`` for float32."""
    return _DTYPES[resolve(precision, device).resolved]


@contextlib.contextmanager
def autocast(precision: str, device: str) -> Iterator[None]:
    """Autocast for ``precision`` on ``device``; float32 explicitly turns any outer autocast off, so
    an fp32 prediction is fp32 whatever the caller had open."""
    dtype = autocast_dtype(precision, device)
    device_type = device.split(":")[0]
    if dtype is None:
        with torch.autocast(device_type, enabled=False):
            yield
    else:
        with torch.autocast(device_type, dtype=dtype):
            yield

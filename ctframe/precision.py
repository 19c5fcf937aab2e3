"""Mixed precision shared by backbones and trainers: which autocast dtype a precision setting means."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def native_cpu_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX); elsewhere bf16 is emulated, slowly."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def autocast_dtype(precision: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device_type`` (``"cpu"``, ``"cuda"``); ``None``: float32.

    ``"auto"`` picks bf16 only where the hardware runs it natively (CUDA with bf16, CPUs with
    AVX512-BF16 or AMX), never fp16: fp16 training needs loss scaling that plain autocast lacks.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device_type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device_type == "cpu" and native_cpu_bf16():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(precision: str, device_type: str) -> Iterator[None]:
    """Autocast for ``precision``; for float32 it opens nothing, leaving any outer autocast in charge."""
    dtype = autocast_dtype(precision, device_type)
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type, dtype=dtype):
            yield

"""Autocast precision for the backbone (a copy of ctframe_resnet_v2.runtime: plugins stay independent)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def native_cpu_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX); elsewhere bf16 is emulated, slowly."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, check, lambda: False)() for check in checks)


def autocast_dtype(precision: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device_type``; ``None`` means plain float32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device_type == "cuda":  # "auto"
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device_type == "cpu" and native_cpu_bf16():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(precision: str, device_type: str) -> Iterator[None]:
    dtype = autocast_dtype(precision, device_type)
    if dtype is None:  # leave any autocast a trainer opened around the model alone
        yield
    else:
        with torch.autocast(device_type, dtype=dtype):
            yield

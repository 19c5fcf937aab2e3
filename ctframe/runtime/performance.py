"""Process and device speed settings, each with one owner: the memory allocator and the memory format.

Importing this module stays cheap (torch loads inside the functions that need it), so the command line
can tune the allocator before any command runs.
``docs/performance.md`` has the measurements behind each choice.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

ALLOCATOR_ENV = "CTFRAME_MALLOC_TUNING"
"""``0`` leaves glibc's malloc settings alone (see :func:`tune_allocator`)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BELOW = 1 << 30
_tuned: bool | None = None


def tune_allocator() -> bool:
    """Keep freed activation memory in the process instead of returning it to the kernel (glibc only).

    glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
    unmaps it on ``free``; a batch of 224 px activations is such a block, so every layer's output is
    page-faulted in again, in every step. On the 2-core EPYC VM of docs/performance.md a ReLU over
    (16, 256, 56, 56) took 57 ms that way and 7 ms with the memory kept (the train step 1.8x faster).
    TensorFlow keeps its own pool, so without this torch loses to Keras on allocation alone. Blocks
    up to 1 GiB come from the heap and the heap is trimmed only when 2 GiB are free at its top: peak
    RSS is the peak of live memory, which is what it is anyway during a step.

    Called by the ``ctframe`` command; a library user calls it once at start. Returns whether the
    settings are in effect; ``$CTFRAME_MALLOC_TUNING=0`` or a non-glibc platform leaves malloc alone.
    """
    global _tuned
    if _tuned is None:
        _tuned = False
        if os.environ.get(ALLOCATOR_ENV, "1").strip() != "0" and _is_glibc():
            try:
                libc = ctypes.CDLL("libc.so.6")
                _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, 2 * _KEEP_BELOW)
                )
            except (OSError, AttributeError):
                _tuned = False
    return _tuned


def release_memory() -> bool:
    """Hand the memory freed so far back to the kernel, between the steps of a run (glibc only).

    With :func:`tune_allocator` freed activations stay in the process, which is what a training loop
    wants; between steps whose allocations differ (training, prediction, the report's Grad-CAM) the kept
    blocks fit the next step's sizes badly, and each step's peak would stack on the last one's. Returns
    whether memory was released; costs page faults the next time that memory is used (milliseconds).
    """
    import gc

    gc.collect()
    if not _is_glibc():
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _is_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


ChannelsLast = bool | Literal["auto"]


def channels_last_preferred(device: str) -> tuple[bool, str]:
    """Whether NHWC is the faster memory format on ``device``, and why.

    CUDA: cuDNN's NHWC kernels (tensor cores want it). CPU: oneDNN's NHWC convolutions are faster on
    AVX-512 CPUs (measured: docs/performance.md); on AVX2-only CPUs NCHW stays (NHWC measured slower
    there: 0.95x forward, 0.89x train step).
    """
    import torch

    kind = device.split(":")[0]
    if kind == "cuda":
        return True, "CUDA: cuDNN runs NHWC fastest"
    if kind == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        if capability.startswith("AVX512") and torch.backends.mkldnn.is_available():
            return True, f"CPU with {capability}: oneDNN's NHWC convolutions"
        return False, f"CPU with {capability}: NCHW (NHWC measured faster only with AVX-512)"
    return False, f"no NHWC policy for device type {kind!r}"


def resolve_channels_last(setting: ChannelsLast, device: str) -> bool:
    """``"auto"`` -> :func:`channels_last_preferred`; ``True`` / ``False`` as given."""
    if setting == "auto":
        return channels_last_preferred(device)[0]
    return bool(setting)


def memory_format(channels_last: bool) -> torch.memory_format:
    import torch

    return torch.channels_last if channels_last else torch.contiguous_format

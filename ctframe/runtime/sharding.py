"""Dividing work and the model over torchrun's processes: contiguous shares of items and batches, each
item scored exactly once, a seed per process, and DistributedDataParallel around the trainable part.

In one process every function is the identity (the whole range, the module itself) and imports no torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ctframe.base.training import Predictions
from ctframe.runtime.distributed import gather, rank, session, world_size

T = TypeVar("T")


def shard_range(count: int) -> tuple[int, int]:
    """This process's contiguous share ``[start, stop)`` of ``count`` items; sizes differ by at most one,
    and the shares of all processes, in rank order, are ``range(count)`` exactly (no padding)."""
    size, me = world_size() if session() is not None else 1, rank() if session() is not None else 0
    return count * me // size, count * (me + 1) // size


def shard_batches(batches: Sequence[Sequence[int]]) -> list[list[int]]:
    """This process's contiguous part of every global batch (the whole batches in one process)."""
    if session() is None:
        return [list(batch) for batch in batches]
    size, me = world_size(), rank()
    return [list(batch[len(batch) * me // size : len(batch) * (me + 1) // size]) for batch in batches]


def map_shards(dataset: Any, work: Callable[[Any], T], combine: Callable[[list[T]], T]) -> T:
    """``work`` on this process's share of ``dataset``; the shares' results, combined in rank order, on
    every process. Each item is processed exactly once."""
    if session() is None:
        return work(dataset)
    from torch.utils.data import Subset

    start, stop = shard_range(len(dataset))
    return combine(gather(work(Subset(dataset, range(start, stop)))))


def concat_predictions(parts: list[Any]) -> Any:
    """Predictions of consecutive shares of one dataset, joined in order."""
    import numpy as np

    return Predictions(
        tuple(sample_id for part in parts for sample_id in part.sample_ids),
        np.concatenate([part.labels for part in parts]),
        np.concatenate([part.probabilities for part in parts]),
    )


def rank_seed(seed: int) -> int:
    """The seed of this process's own randomness (dropout, augmentation): ``seed`` itself on rank 0, so a
    single process draws exactly what it always drew, and a different stream on every other rank."""
    return seed if session() is None or rank() == 0 else (seed * 1_000_003 + rank() * 7_919) % 2**62


def wrap(module: Any) -> Any:
    """``module`` in DistributedDataParallel (its BatchNorm layers made SyncBatchNorm when the session
    syncs them); the module itself in one process.

    Wrap again whenever the set of trainable parameters changes: DDP fixes it at construction.
    Buffers are not broadcast on every forward (that is a collective per call, which validation with
    uneven shares would mismatch); :func:`share_buffers` sends rank 0's once per epoch instead.
    """
    state = session()
    if state is None:
        return module
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if state.sync_batchnorm:
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)  # shares parameters and buffers
    device = torch.device(state.device)
    ids = [device.index] if device.type == "cuda" else None
    # newer torch renamed the option (the old name still works there, with a warning)
    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    no_sync = {"forward_sync_buffers" if newer else "broadcast_buffers": False}
    return DistributedDataParallel(module, device_ids=ids, **no_sync)


def share_buffers(module: Any) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics): the model rank 0 saves is
    then the model every process validates."""
    if session() is None:
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def unwrap(module: Any) -> Any:
    return getattr(module, "module", module)

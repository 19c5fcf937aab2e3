"""Distributed training under torchrun: rank, world size and the few collectives ctframe needs.

torchrun (torch.distributed.elastic) starts one process per device and tells each its place through
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, the rendezvous address); :func:`join`
initialises the process group from them and DistributedDataParallel does the gradient all-reduce.
ctframe launches nothing and has no communication layer of its own.

In a plain process (no ``WORLD_SIZE``, or a world of one) every function here is a cheap no-op: rank 0
of 1, and ``torch.distributed`` is never imported. The rules it serves (docs/distributed.md): rank 0
owns the run directory, other processes receive what they need from it, and every sample that is
scored is scored exactly once.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from ctframe.base.errors import CtframeError, DataError, RecipeError, RunError
from ctframe.base.training import Trainer

# torch, torch.distributed and numpy are imported inside the functions that need a process group, after
# their one-process early return: a plain process never loads them here (see the module docstring).

T = TypeVar("T")

RESTART_ENV = "TORCHELASTIC_RESTART_COUNT"


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def world_size() -> int:
    return env_int("WORLD_SIZE", 1)


def rank() -> int:
    return env_int("RANK", 0)


def local_rank() -> int:
    return env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """Rank 0: the one process that writes files and talks to the console."""
    return rank() == 0


def active() -> bool:
    """Whether this process is one of several joined in a process group."""
    return _state is not None


@dataclass(frozen=True)
class Session:
    backend: str
    sync_batchnorm: bool
    device: str


_state: Session | None = None


def session() -> Session | None:
    """The joined process group's settings (backend, BatchNorm syncing, device); ``None`` in one process."""
    return _state


def local_device(device: str) -> str:
    """``cuda:LOCAL_RANK`` for a CUDA device when torchrun started several processes."""
    if world_size() > 1 and device.startswith("cuda"):
        return f"cuda:{local_rank()}"
    return device


def join(settings: Any, device: str) -> None:
    """Join torchrun's process group (``settings``: the recipe's ``[run.distributed]``); idempotent.

    A no-op in a single process. :func:`leave` ends the session; a process that fails leaves at exit.
    """
    global _state
    if world_size() == 1 or _state is not None:
        return

    import torch
    import torch.distributed as dist

    device = local_device(device)
    cuda = device.startswith("cuda")
    backend = settings.backend if settings.backend != "auto" else ("nccl" if cuda else "gloo")
    if backend == "nccl" and not cuda:
        raise RecipeError("[run.distributed] backend = 'nccl' needs CUDA devices; use 'gloo' or 'auto'")
    # torch's SyncBatchNorm runs on GPUs only; on the CPU each process normalises over its own share
    if settings.sync_batchnorm == "on" and not cuda:
        raise RecipeError(
            "[run.distributed] sync_batchnorm = 'on' needs CUDA (torch has no CPU SyncBatchNorm); "
            "use 'auto' or 'off'"
        )
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = timedelta(minutes=settings.timeout_minutes)
        dist.init_process_group(backend, timeout=timeout, **_restart_store(timeout))
        atexit.register(_leave)
    _state = Session(backend, settings.sync_batchnorm != "off" and cuda, device)


def _restart_store(timeout: timedelta) -> dict[str, Any]:
    """For workers that torchrun restarted: its agent's store still holds the failed attempt's keys
    (the old processes' addresses), which the new ones can read before they are overwritten and then
    fail to connect. A prefix per attempt keeps the attempts apart. Nothing to add on a first attempt."""
    import torch.distributed as dist

    restart = env_int(RESTART_ENV, 0)
    if restart == 0 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}

    agent = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size(), False, timeout=timeout
    )
    store = dist.PrefixStore(f"ctframe/attempt_{restart}", agent)
    return {"store": store, "rank": rank(), "world_size": world_size()}


def leave() -> None:
    """End of a run: wait until every process is done (rank 0 evaluates alone), then leave the group.

    Leaving together, rather than each process at its own exit, keeps a finished process from tearing
    down its connections while rank 0 still holds its side of them.
    """
    if _state is None:
        return
    barrier()
    _leave()


def _leave() -> None:
    import torch.distributed as dist

    global _state

    _state = None
    gc.collect()  # DDP wrappers of finished phases hold the group: release them while it still exists
    if dist.is_initialized():
        dist.destroy_process_group()


def describe() -> dict[str, Any] | None:
    """What ``environment.json`` records about the process group (``None`` in one process)."""
    if _state is None:
        return None
    return {
        "world_size": world_size(),
        "backend": _state.backend,
        "sync_batchnorm": _state.sync_batchnorm,
        "local_world_size": env_int("LOCAL_WORLD_SIZE", 1),
        "nodes": env_int("GROUP_WORLD_SIZE", 1),
        "restart": env_int(RESTART_ENV, 0),
    }


# ---------------------------------------------------------------- collectives


def barrier() -> None:
    if _state is not None:
        import torch.distributed as dist

        dist.barrier()


def _broadcast(value: Any) -> Any:
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def from_main(work: Callable[[], T]) -> T:
    """Run ``work`` on rank 0 only and hand its result to every process.

    For what only rank 0 may do (create the run directory, read its checkpoints). An error on rank 0
    is raised on every process, so none of them waits for a result that will never come.
    """
    if _state is None:
        return work()
    outcome: tuple[str, Any] = ("", None)
    if is_main():
        try:
            outcome = ("ok", work())
        except CtframeError as error:
            outcome = ("error", error)
        except BaseException as error:
            outcome = ("error", RunError(f"rank 0 failed: {type(error).__name__}: {error}"))
            _broadcast(outcome)
            raise
    outcome = _broadcast(outcome)
    if outcome[0] == "error":
        raise outcome[1]
    return outcome[1]


@contextlib.contextmanager
def main_goes_first() -> Iterator[None]:
    """Rank 0 runs the block before the others: it fills the shared caches (demo data, downloaded
    weights, decoded images) and the others then read them instead of racing it."""
    if _state is not None and not is_main():
        barrier()
    yield
    if _state is not None and is_main():
        barrier()


def gather(value: T) -> list[T]:
    """Every process's ``value``, in rank order, on every process (``[value]`` in one process)."""
    if _state is None:
        return [value]

    import torch.distributed as dist

    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def sum_over_ranks(values: Sequence[float]) -> list[float]:
    """Element-wise sum over processes, in float64 (unchanged in one process).

    The same bits reach every process, so decisions taken on the result (early stopping) agree.
    """
    if _state is None:
        return list(values)

    import torch
    import torch.distributed as dist

    device = _state.device if _state.backend == "nccl" else "cpu"
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def check_agree(value: Any, what: str) -> None:
    """A one-line :class:`RunError` on every process unless all hold the same ``value``."""
    if _state is None:
        return
    values = gather(value)
    differing = [r for r, v in enumerate(values) if v != values[0]]
    if differing:
        raise RunError(
            f"processes disagree on {what}: rank {differing[0]} has {values[differing[0]]!r}, "
            f"rank 0 has {values[0]!r}"
        )


def check_same_data(data: Any) -> None:
    """Every process must train and score the same split: compare sizes and sample ids with rank 0."""
    if _state is None:
        return
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        dataset = getattr(data, name)
        ids = getattr(dataset, "sample_ids", None)
        digest.update(json.dumps([name, len(dataset), list(ids) if ids is not None else None]).encode())
    try:
        check_agree(digest.hexdigest()[:16], "the data split (sizes and sample ids)")
    except RunError as error:
        raise DataError(f"{error}; every process must see the same files") from None


def check_trainer(trainer: Trainer, name: str) -> None:
    """Under torchrun, refuse a trainer whose ``supports_distributed`` is False (the engine has checked the
    Trainer contract): each process would train on everything and write into the run directory on its own."""
    if _state is not None and not trainer.supports_distributed:
        raise RecipeError(
            f"trainer {name!r} does not support distributed training ({world_size()} processes); "
            "run it in one process, without torchrun"
        )


# ---------------------------------------------------------------- sharding

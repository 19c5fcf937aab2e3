"""Activation checkpointing of phase 2's unfrozen suffix: less memory per step for one more forward.

Phase 2's memory peak is the backward's saved activations: every trainable layer keeps its inputs until
the backward reaches it (for the study, ResNet101V2's last 11 + 3 residual blocks at batch 32). With
``activation_checkpointing = "on"`` each trainable segment of the backbone (``Backbone.segments``: a
residual block for ResNets) keeps only its input and runs its forward again during the backward
(``torch.utils.checkpoint``, non-reentrant). Gradients are the same up to float rounding; RNG states are
replayed, and BatchNorm layers that update their statistics in training mode would update them twice,
so the recomputation restores every buffer of its segment afterwards: the statistics are those of the
run without checkpointing. ``"auto"`` measures the saved activations of two tiny batches and turns it on
when the estimated step peak exceeds ``memory_limit_gb``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ctframe.api.training import Classifier, autocast
from ctframe_two_phase.loops import BatchSource, Forward, set_train_mode
from ctframe_two_phase.phase import PhaseJob

GB = 10**9
OPTIMIZER_STATES = 1
"""Tensors of optimiser state per trainable parameter (KerasRMSprop: its squared-gradient average)."""
TRANSIENT_FACTOR = 0.8
"""What a step holds beyond its saved activations (the backward's gradient buffers, the forward's
temporaries, allocator slack), as a share of them: ResNet101V2's phase 2 at batch 32 peaked 0.6-0.7 GB
above parameters, gradients, optimiser state and 0.9 GB of saved activations in fp32, 0.27-0.31 GB above
0.5 GB in bf16 (benchmarks/bench_phase2_memory.py, two runs); 0.8 covers all four."""
PROBE_BATCHES = (2, 4)
"""The two batch sizes whose saved activations are measured; the step's are extrapolated linearly."""


def trainable_segments(backbone: nn.Module) -> list[nn.Module]:
    """The modules of the backbone's segments that hold a trainable parameter (none without segments).

    Only the backbone's own submodules: a segment built for the chain (ResNetV2's stem and output
    links) is a new object on every ``segments()`` call, which neither ``forward`` nor a suffix built
    from another call would run through."""
    segments_of = getattr(backbone, "segments", None)
    segments = list(segments_of()) if callable(segments_of) else []
    own = {id(module) for module in backbone.modules()}
    return [
        s.module
        for s in segments
        if id(s.module) in own and any(p.requires_grad for p in s.module.parameters())
    ]


@contextlib.contextmanager
def _buffers_kept(module: nn.Module) -> Iterator[None]:
    """Whatever runs inside leaves ``module``'s buffers (BatchNorm statistics) as they were."""
    kept = [(buffer, buffer.detach().clone()) for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in kept:
                buffer.copy_(value)


def _checkpointed(module: nn.Module, forward: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
    if not torch.is_grad_enabled():  # validation and cache building save nothing anyway
        return forward(*args, **kwargs)
    contexts = lambda: (contextlib.nullcontext(), _buffers_kept(module))  # noqa: E731 - (forward, recompute)
    return checkpoint(forward, *args, use_reentrant=False, context_fn=contexts, **kwargs)


@contextlib.contextmanager
def checkpointed(modules: Sequence[nn.Module]) -> Iterator[int]:
    """Every call of ``modules`` with gradients on runs under activation checkpointing until the block
    ends (their ``forward`` is wrapped on the instance, so both the whole model and a
    ``SuffixClassifier`` go through it); yields how many modules that is."""
    wrapped = []
    try:
        for module in modules:
            own = module.__dict__.get("forward")  # an instance forward someone set before us
            module.forward = functools.partial(_checkpointed, module, module.forward)  # type: ignore[method-assign]
            wrapped.append((module, own))
        yield len(wrapped)
    finally:
        for module, own in wrapped:
            if own is None:
                del module.forward
            else:
                module.forward = own  # type: ignore[method-assign]


@dataclass(frozen=True)
class PeakEstimate:
    """Phase 2's memory at the top of a training step, in bytes, by part."""

    resident: int
    """What the process holds before training (weights, caches, data): RSS, or allocated CUDA memory."""
    gradients: int
    optimizer: int
    activations: int
    """Saved for the backward at the training batch size (extrapolated from :data:`PROBE_BATCHES`)."""

    @property
    def transient(self) -> int:
        return int(TRANSIENT_FACTOR * self.activations)

    @property
    def total(self) -> int:
        return self.resident + self.gradients + self.optimizer + self.activations + self.transient

    def describe(self) -> str:
        parts = ("resident", "gradients", "optimizer", "activations", "transient")
        return ", ".join(f"{name} {getattr(self, name) / GB:.2f}" for name in parts) + " GB"


def resident_bytes(device: str) -> int:
    """Memory this process holds now: allocated CUDA memory on a CUDA device, else its RSS (Linux)."""
    if device.startswith("cuda"):
        return torch.cuda.memory_allocated(device)
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096
    except (OSError, IndexError, ValueError):
        return 0  # no /proc: the estimate counts what training adds


def saved_bytes(forward: Forward, inputs: torch.Tensor, precision: str, device: str, skip: set[int]) -> int:
    """Bytes autograd saves for the backward of ``forward(inputs)``, each storage once, leaving out the
    storages in ``skip`` (the parameters: they are counted once, not per image)."""
    seen: set[int] = set()
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen and storage.data_ptr() not in skip:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast(precision, device):
        forward(inputs)
    return total


def estimate_peak(
    model: nn.Module,
    forward: Forward,
    source: BatchSource,
    batch_size: int,
    precision: str,
    device: str,
) -> PeakEstimate:
    """Phase 2's step peak without checkpointing, from two tiny batches of ``source`` through ``forward``
    (``model`` in its training modes; its buffers are left as they were)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable_bytes = sum(p.numel() * p.element_size() for p in trainable)
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    small, large = PROBE_BATCHES
    inputs, _, _ = next(iter(source.batches([list(range(min(large, len(source))))], 0)))
    if len(inputs) < large:  # a train split of 2 or 3 images: a step is its whole split anyway
        small = large = len(inputs)
    with _buffers_kept(model):
        measured = [saved_bytes(forward, inputs[:size], precision, device, skip) for size in (small, large)]
    per_image = (measured[1] - measured[0]) / (large - small) if large > small else measured[0] / small
    activations = int(measured[0] + per_image * (batch_size - small))
    optimizer = OPTIMIZER_STATES * trainable_bytes
    return PeakEstimate(resident_bytes(device), trainable_bytes, optimizer, activations)


def checkpoint_suffix(
    job: PhaseJob, model: Classifier, forward: Forward, train: BatchSource, cleanup: contextlib.ExitStack
) -> bool:
    """Checkpoint the trainable segments until ``cleanup`` closes, when ``activation_checkpointing`` is
    "on", or "auto" and the :func:`estimate_peak` through ``forward`` (the model's own, not a DDP
    wrapper's) exceeds ``memory_limit_gb``; whether it did."""
    options, logger = job.options, job.context.logger
    setting, limit = options.activation_checkpointing, options.memory_limit_gb
    if setting == "off" or (setting == "auto" and limit is None):
        return False
    modules = trainable_segments(model.backbone)  # type: ignore[arg-type]
    if not modules:
        logger.warning(
            f"{job.phase.key}: activation checkpointing needs a backbone with segments() and trainable "
            "layers in them; this phase trains without it"
        )
        return False
    if setting == "auto":
        set_train_mode(model, False, job.phase.update_batchnorm)
        estimate = estimate_peak(model, forward, train, options.batch_size, job.precision, job.context.device)
        needed = estimate.total > limit * GB  # type: ignore[operator]
        logger.info(
            f"{job.phase.key}: estimated step peak {estimate.total / GB:.2f} GB ({estimate.describe()}) "
            f"{'over' if needed else 'within'} memory_limit_gb = {limit}"
        )
        if not needed:
            return False
    count = cleanup.enter_context(checkpointed(modules))
    logger.info(f"{job.phase.key}: activation checkpointing of {count} trainable backbone segments")
    return True

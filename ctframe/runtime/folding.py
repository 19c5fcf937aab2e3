"""Inference-mode BatchNorm folded into the convolution that feeds it, for as long as a block runs.

In inference mode ``bn(conv(x))`` is ``conv'(x)`` with ``w' = w * s`` and ``b' = (b - mean) * s + beta``
per output channel, ``s = gamma / sqrt(var + eps)``: one pass over the activation fewer, exact up to
float rounding. Only a BatchNorm whose input is a convolution's output and nothing else's can fold; in a
pre-activation ResNet the ``preact_bn`` of each block and ``post_bn`` follow an addition (or the stem's
pooling), not a convolution, and stay as they are.

Folding never changes parameters, buffers or ``state_dict``: inside :func:`folded_batchnorm` the
convolution's and BatchNorm's ``forward`` are replaced on the instances and restored on exit, so a
checkpoint written meanwhile holds the unfolded weights and DDP or ``torch.compile`` see the same
modules. A BatchNorm found in training mode at call time runs unfolded (its statistics are the batch's).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import fx, nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldPlan:
    pairs: tuple[tuple[str, str], ...]
    """``(convolution, batchnorm)`` module names, relative to the module planned."""
    unfoldable: tuple[str, ...]
    """BatchNorm modules that cannot fold (input not a convolution's sole output, or not traceable)."""


def plan_folding(module: nn.Module) -> FoldPlan:
    """Find the convolution -> BatchNorm pairs of ``module`` by tracing its ``forward`` with ``torch.fx``.

    A pair needs: the BatchNorm's only input is the convolution's output, that output has no other
    user, each module is called once per forward, and the BatchNorm keeps running statistics. A module
    that fx cannot trace folds nothing (logged at debug level).
    """
    norms = [name for name, m in module.named_modules() if isinstance(m, _NORMS)]
    try:
        graph = fx.Tracer().trace(module)
    except Exception as error:  # data-dependent control flow and the like: nothing folds, all still runs
        log.debug("BatchNorm folding: %s is not fx-traceable (%s)", type(module).__name__, error)
        return FoldPlan((), tuple(norms))
    modules = dict(module.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _NORMS):
            continue
        source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if not (isinstance(source, fx.Node) and source.op == "call_module"):
            continue
        conv, norm = modules[source.target], modules[node.target]
        if (
            isinstance(conv, _CONVS)
            and len(source.users) == 1
            and calls[source.target] == 1
            and calls[node.target] == 1
            and norm.running_mean is not None
            and conv.out_channels == norm.num_features
        ):
            pairs.append((str(source.target), str(node.target)))
    folded = {norm for _, norm in pairs}
    return FoldPlan(tuple(pairs), tuple(name for name in norms if name not in folded))


@torch.no_grad()
def _folded_weights(conv: nn.Module, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    weight = conv.weight.float()
    scale = torch.rsqrt(norm.running_var.float() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.float()
    bias = conv.bias.float() if conv.bias is not None else torch.zeros_like(scale)
    shift = norm.bias.float() if norm.bias is not None else torch.zeros_like(scale)
    folded = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    # keep the convolution's dtype and memory format, so oneDNN / cuDNN pick the same kernels
    folded = folded.to(conv.weight.dtype).contiguous(memory_format=_format_of(conv.weight))
    return folded, ((bias - norm.running_mean.float()) * scale + shift).to(conv.weight.dtype)


def _format_of(tensor: torch.Tensor) -> torch.memory_format:
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters(recurse=False))


@contextlib.contextmanager
def folded_batchnorm(module: nn.Module, *, frozen_only: bool = False) -> Iterator[int]:
    """Fold every foldable inference-mode BatchNorm of ``module`` while the block runs; yields how many.

    ``frozen_only``: only pairs whose convolution and BatchNorm have no trainable parameter (the frozen
    prefix of a fine-tuned backbone), so folded copies never go stale during training. The folded
    weights are computed once on entry; nothing that changes the pairs' weights may run inside.
    """
    plan = plan_folding(module)
    modules = dict(module.named_modules())
    patched: list[tuple[nn.Module, object]] = []
    try:
        for conv_name, norm_name in plan.pairs:
            conv, norm = modules[conv_name], modules[norm_name]
            if frozen_only and (_trainable(conv) or _trainable(norm)):
                continue
            weight, bias = _folded_weights(conv, norm)
            replacements = ((conv, _conv_forward(conv, norm, weight, bias)), (norm, _norm_forward(norm)))
            for target, forward in replacements:
                patched.append((target, target.__dict__.get("forward")))
                target.forward = forward
        yield len(patched) // 2
    finally:
        for target, previous in reversed(patched):
            del target.forward
            if previous is not None:
                target.forward = previous


def _conv_forward(conv: nn.Module, norm: nn.Module, weight: torch.Tensor, bias: torch.Tensor):
    unfolded = type(conv).forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        if norm.training:  # batch statistics: nothing to fold
            return unfolded(conv, x)
        return conv._conv_forward(x, weight, bias)

    return forward


def _norm_forward(norm: nn.Module):
    unfolded = type(norm).forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        return unfolded(norm, x) if norm.training else x

    return forward

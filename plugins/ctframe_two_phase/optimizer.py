"""RMSprop with Keras semantics.

Keras (and TensorFlow's ApplyRMSProp) divide by ``sqrt(v + eps)``; ``torch.optim.RMSprop`` divides
by ``sqrt(v) + eps``. With eps = 1e-7 the difference matters whenever ``v`` is tiny (frozen-ish
weights, sparse gradients): Keras' step is bounded by ``lr * |g| / sqrt(eps)``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class KerasRMSprop(torch.optim.Optimizer):
    """``v = rho * v + (1 - rho) * g^2``; ``w -= lr * g / sqrt(v + eps)`` (or ``sqrt(v) + eps``)."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        rho: float = 0.9,
        eps: float = 1e-7,
        eps_inside_sqrt: bool = True,
    ):
        if lr <= 0 or not 0 < rho < 1 or eps <= 0:
            raise ValueError(f"invalid RMSprop settings lr={lr} rho={rho} eps={eps}")
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps, "eps_inside_sqrt": eps_inside_sqrt})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            rho, eps, lr = group["rho"], group["eps"], group["lr"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["velocity"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                velocity = state["velocity"]
                velocity.mul_(rho).addcmul_(grad, grad, value=1 - rho)
                denominator = (
                    velocity.add(eps).sqrt_() if group["eps_inside_sqrt"] else velocity.sqrt().add_(eps)
                )
                param.addcdiv_(grad, denominator, value=-lr)
        return loss

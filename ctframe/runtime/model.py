"""The classifier a trainer fits: backbone + head, plus the helpers every trainer needs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ctframe.base.contracts import Backbone, Head, Layer

_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)


class Classifier(nn.Module):
    """``head(backbone(images))``; images are RGB ``0..255`` (uint8 or float), ``NCHW``."""

    def __init__(self, backbone: Backbone, head: Head, class_names: Sequence[str]):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.class_names = tuple(class_names)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, num_classes)`` from logits of any head layout."""
        return logits_to_probabilities(logits)


def logits_to_probabilities(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    if logits.shape[1] == 1:  # sigmoid head: probability of class index 1
        positive = torch.sigmoid(logits)
        return torch.cat([1 - positive, positive], dim=1)
    return torch.softmax(logits, dim=1)


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy for a one-logit head, categorical cross-entropy otherwise.

    ``weights`` (one per class): each sample's loss times its class's weight, summed and divided by the
    number of samples, as Keras applies ``class_weight`` (not torch's weighted mean)."""
    logits = logits.float()
    if weights is None:
        if logits.shape[1] == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
        return F.cross_entropy(logits, labels.long())
    if logits.shape[1] == 1:
        losses = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float(), reduction="none")
    else:
        losses = F.cross_entropy(logits, labels.long(), reduction="none")
    return (losses * weights.to(losses.device, losses.dtype)[labels.long()]).mean()


def set_trainable_layers(backbone: Backbone, last: int | None) -> list[Layer]:
    """Freeze the backbone except its last ``last`` layers (all of them for ``None``, none for 0).

    "Layers" are entries of ``backbone.layers``, so the count means what the backbone's reference
    model means by it. Returns the trainable layers.
    """
    layers = list(backbone.layers)
    if last is None:
        last = len(layers)
    if last < 0:
        raise ValueError(f"cannot unfreeze a negative number of layers ({last})")
    for parameter in backbone.parameters():  # type: ignore[attr-defined]
        parameter.requires_grad_(False)
    trainable = layers[len(layers) - min(last, len(layers)) :]
    for layer in trainable:
        if layer.module is not None:
            for parameter in layer.module.parameters():
                parameter.requires_grad_(True)
    return trainable


def freeze_inactive_batchnorm(model: nn.Module, update_trainable: bool = True) -> None:
    """Put BatchNorm layers without trainable parameters into inference mode.

    Call after ``model.train()``. A frozen layer must use its moving statistics, as a Keras layer
    with ``trainable=False`` does. With ``update_trainable=False`` every BatchNorm stays in
    inference mode, even the trainable ones (their affine parameters still learn).
    """
    for module in model.modules():
        if isinstance(module, _BATCH_NORMS):
            trainable = any(p.requires_grad for p in module.parameters(recurse=False))
            if not trainable or not update_trainable:
                module.eval()


def resolve_device(requested: str) -> str:
    """``"auto"`` -> cuda, then mps, then cpu; anything else is checked and returned."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but MPS is not available; use 'auto' or 'cpu'")
    return requested

"""Where a trained model looks: class activation maps through registered explainer components.

An explainer (registered through ``ctframe_register_explainers``; the built-in ones wrap the
``grad-cam`` package) maps images to one map per image of where a class's score comes from, seen at
the backbone's ``cam_layer``. The core decides how it is run, the same way for every explainer:

* in fp32, without autocast or ``torch.compile``, on per-class *scores* (:class:`ClassScores`: the
  logits of a softmax head; ``-z, z`` for a one-logit sigmoid head, so either class can be explained);
* with gradients from the scores back to the target layer and no further: the layer's output is
  replaced by a leaf that requires grad (parameters are set to not require grad for the call, then
  restored), so a frozen backbone still gets its CAM, nothing before the layer is kept for a backward
  pass, and the backward runs through the head only. An explainer that needs gradients with respect
  to the images (an attribution method, not a CAM) sets ``input_gradients = True`` and gets the whole
  graph: the images then require grad.

:func:`overlay` is the one-image entry point (the report's gallery uses it);
:mod:`ctframe.workflows.explain` is ``ctframe explain``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib import colormaps
from torch import nn

from ctframe.base.contracts import Kind
from ctframe.base.errors import CtframeError
from ctframe.base.model_tools import Explainer
from ctframe.registry.plugins import Registry, get_registry
from ctframe.runtime.components import build_component, component_context, uncompiled

if TYPE_CHECKING:
    from ctframe.runtime.loading import LoadedModel
    from ctframe.runtime.model import Classifier

DEFAULT_METHOD = "gradcam"
OVERLAY_WEIGHT = 0.5
"""Share of the image in an overlay; the rest is the colour-mapped CAM."""


class ExplainError(CtframeError):
    """A model that cannot be explained as asked (no layer to explain, an unknown class)."""


class ClassScores(nn.Module):
    """One score per class from a classifier's logits, whatever the head's layout."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(images).float()
        if logits.shape[1] == 1:  # sigmoid head: z is class 1's evidence, -z class 0's
            return torch.cat([-logits, logits], dim=1)
        return logits


def method_name(method: str) -> str:
    """``gradcam++`` as written on a command line -> the registered name ``gradcampp``."""
    return method.strip().lower().replace("+", "p").replace("-", "")


def cam_layer(backbone: nn.Module) -> nn.Module:
    """The backbone's layer to explain (its optional ``cam_layer``), or a one-line error."""
    layer = getattr(backbone, "cam_layer", None)
    if not isinstance(layer, nn.Module):
        raise ExplainError(
            f"backbone {type(backbone).__name__} names no cam_layer (the last spatial feature map before "
            "pooling), so it cannot be explained; its plugin must add one (docs/plugins.md)"
        )
    return layer


def feature_map_size(classifier: nn.Module, image_shape: Sequence[int]) -> tuple[int, int]:
    """Height and width of the ``cam_layer`` map for images of ``image_shape`` ``(3, H, W)``: a CAM
    has this resolution before it is resized to the image (1 x 1 locates nothing)."""
    layer = cam_layer(classifier.backbone)
    sizes: list[tuple[int, int]] = []
    handle = layer.register_forward_hook(lambda _m, _i, output: sizes.append(tuple(output.shape[-2:])))
    device = next(classifier.parameters()).device
    try:
        with torch.inference_mode():
            classifier.backbone(torch.zeros(1, *image_shape, device=device))
    finally:
        handle.remove()
    return sizes[0]


def make_explainer(
    method: str = DEFAULT_METHOD, options: Mapping[str, Any] | None = None, registry: Registry | None = None
) -> Explainer:
    """The registered explainer ``method`` (``gradcam``, ``gradcam++``, ``scorecam``, ...)."""
    registry = registry or get_registry()
    component, validated = build_component(registry, Kind.EXPLAINER, method_name(method), options, "--method")
    return component.factory(validated, component_context())


# keyword-only options with defaults: the documented library face (docs/export.md), called by keyword
def cam_maps(
    classifier: Classifier,
    images: torch.Tensor,
    targets: Sequence[int],
    method: str | Explainer = DEFAULT_METHOD,
    *,
    options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    device: str = "cpu",
    batch_size: int = 16,
) -> np.ndarray:
    """CAMs of ``images`` (uint8 or float ``0..255``, ``(N, 3, H, W)``) for class ``targets[i]`` each:
    float ``(N, H, W)`` in ``[0, 1]``. The classifier is run in fp32 on ``device`` (it is moved there)."""
    if len(targets) != len(images):
        raise ValueError(f"{len(targets)} targets for {len(images)} images; give one class per image")
    explainer = method if callable(method) else make_explainer(method, options, registry)
    classifier = uncompiled(classifier)
    layer = cam_layer(classifier.backbone)
    model = ClassScores(classifier).float().to(device).eval()
    _leave_inference_mode(model)
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    whole_graph = bool(getattr(explainer, "input_gradients", False))
    # registered first (prepend), so the explainer's own hooks on the layer see the leaf
    cut = None if whole_graph else layer.register_forward_hook(_gradient_starts_here, prepend=True)
    maps = []
    try:
        for parameter, _ in flags:  # parameter gradients are wasted work for a map
            parameter.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            for start in range(0, len(images), batch_size):
                batch = torch.as_tensor(images[start : start + batch_size]).to(device, torch.float32)
                chosen = [int(t) for t in targets[start : start + batch_size]]
                maps.append(np.asarray(explainer(model, layer, batch.requires_grad_(whole_graph), chosen)))
    finally:
        if cut is not None:
            cut.remove()
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
    if not maps:
        return np.zeros((0, *images.shape[-2:]), dtype=np.float32)
    return np.concatenate(maps).astype(np.float32)


def _gradient_starts_here(_module: nn.Module, _inputs: Any, output: Any) -> Any:
    """Forward hook on the CAM layer: its output as a leaf that requires grad, so that autograd keeps
    nothing of the backbone before it (at 224 px a ResNet101V2 batch of 16 otherwise holds ~2 GB)."""
    if isinstance(output, torch.Tensor) and torch.is_grad_enabled():
        return output.detach().requires_grad_(True)
    return output


def _leave_inference_mode(module: nn.Module) -> None:
    """Replace inference tensors among the weights (made when a model was moved or converted inside
    ``torch.inference_mode``, as a prediction loop may do) with ordinary copies: autograd refuses them."""
    with torch.inference_mode(False):
        for owner in module.modules():
            for name, parameter in list(owner._parameters.items()):
                if parameter is not None and parameter.is_inference():
                    owner._parameters[name] = nn.Parameter(parameter.clone(), parameter.requires_grad)
            for name, buffer in list(owner._buffers.items()):
                if buffer is not None and buffer.is_inference():
                    owner._buffers[name] = buffer.clone()


def blend(image: torch.Tensor | np.ndarray, cam: np.ndarray, weight: float = OVERLAY_WEIGHT) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``: ``image`` (uint8 ``(3, H, W)``) under the jet-coloured ``cam`` ``(H, W)``."""

    rgb = np.asarray(image, dtype=np.float32).transpose(1, 2, 0) / 255.0
    heat = colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3]
    mixed = weight * rgb + (1.0 - weight) * heat
    return np.clip(mixed * 255.0 + 0.5, 0, 255).astype(np.uint8)


# keyword-only options with defaults, as cam_maps takes them: a documented library face (docs/export.md)
def overlays(
    loaded: LoadedModel,
    images: torch.Tensor | np.ndarray,
    targets: Sequence[int],
    method: str = DEFAULT_METHOD,
    *,
    options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    device: str = "cpu",
) -> list[np.ndarray]:
    """One RGB uint8 ``(H, W, 3)`` overlay per image (uint8 ``(N, 3, H, W)``) for class ``targets[i]``."""
    images = torch.as_tensor(np.asarray(images))
    maps = cam_maps(
        loaded.classifier, images, targets, method, options=options, registry=registry, device=device
    )
    return [blend(image, cam) for image, cam in zip(images, maps, strict=True)]


# keyword-only options with defaults, as cam_maps takes them: a documented library face (docs/export.md)
def overlay(
    loaded: LoadedModel,
    image: torch.Tensor | np.ndarray,
    target_index: int,
    method: str = DEFAULT_METHOD,
    *,
    options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """The CAM of class ``target_index`` over one image (uint8 RGB ``(3, H, W)``, at the model's input size,
    as the model's dataset reader gives it): an RGB uint8 ``(H, W, 3)`` array."""
    image = torch.as_tensor(np.asarray(image))
    (result,) = overlays(
        loaded, image[None], [target_index], method, options=options, registry=registry, device=device
    )
    return result

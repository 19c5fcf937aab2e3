"""One pytorch_grad_cam method behind ctframe's explainer contract (``ctframe.api.Explainer``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ctframe import MissingExtraError

from .options import GradientCamOptions

NEEDS = "Grad-CAM explanations need the grad-cam package: pip install 'ctframe[explain]'"


class CamExplainer:
    def __init__(self, class_name: str, options: GradientCamOptions):
        try:
            import pytorch_grad_cam
        except ImportError:
            raise MissingExtraError(NEEDS) from None
        self.method = getattr(pytorch_grad_cam, class_name)
        self.options = options

    def __call__(
        self, model: nn.Module, layer: nn.Module, images: torch.Tensor, targets: Sequence[int]
    ) -> np.ndarray:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        batch_size = getattr(self.options, "batch_size", None)
        takes_batch_size = batch_size and "batch_size" in _init_arguments(self.method)
        extra = {"batch_size": batch_size} if takes_batch_size else {}
        cam = self.method(model=model, target_layers=[layer], **extra)
        if batch_size:
            cam.batch_size = batch_size  # ScoreCAM reads it as an attribute
        try:
            # Not `with cam:`: its __exit__ swallows IndexError, which would hide a failure as no map.
            maps = cam(
                input_tensor=images,
                targets=[ClassifierOutputTarget(int(target)) for target in targets],
                aug_smooth=self.options.aug_smooth,
                eigen_smooth=self.options.eigen_smooth,
            )
        finally:
            cam.activations_and_grads.release()
        return np.asarray(maps, dtype=np.float32)


def _init_arguments(method: type) -> tuple[str, ...]:
    code = method.__init__.__code__
    return code.co_varnames[: code.co_argcount]

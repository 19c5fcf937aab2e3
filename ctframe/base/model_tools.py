"""Contracts of the two kinds that start from a trained model: exporters and explainers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # keep `import ctframe` free of torch
    import numpy as np
    import torch
    from torch import nn

INPUT_NAME = "images"
"""Name of an exported model's input: ``uint8`` RGB images ``(N, 3, H, W)``."""
OUTPUT_NAME = "probabilities"
"""Name of an exported model's output: class probabilities ``(N, C)``."""


@runtime_checkable
class Exporter(Protocol):
    """What an exporter factory returns: ``factory(options, context) -> Exporter``."""

    suffix: str
    """File name ending of the format, e.g. ``".onnx"``; the default output is ``<model key><suffix>``."""

    def export(
        self, module: nn.Module, example: torch.Tensor, path: Path, metadata: Mapping[str, str]
    ) -> None:
        """Write ``module`` (a ``ProbabilityModel``: eval mode, on the CPU) to ``path``.

        ``example`` is a ``uint8`` batch of two images; dimension 0 (the batch)
        must stay dynamic. The input is named :data:`INPUT_NAME`, the outputs as ``module.output_names``
        says (:data:`OUTPUT_NAME` first: the probabilities; ``ctframe export --decision`` adds more).
        ``metadata`` (string keys and values) should be embedded when the format has a place for it.
        """
        ...

    def load(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        """A function running the file at ``path``: ``uint8 (N, 3, H, W)`` -> probabilities ``(N, C)`` (the
        first output, when the file has several)."""
        ...


@runtime_checkable
class Explainer(Protocol):
    """What an explainer factory returns: ``factory(options, context) -> Explainer``."""

    def __call__(
        self, model: nn.Module, layer: nn.Module, images: torch.Tensor, targets: Sequence[int]
    ) -> np.ndarray:
        """One map per image, float ``(N, H, W)`` in ``[0, 1]`` at the images' size.

        ``model`` maps float images (``0..255``, ``N, 3, H, W``) to one score per class
        (``ClassScores``); ``layer`` is a module inside it (the backbone's ``cam_layer``), whose
        output requires grad; ``targets[i]`` is the class index to explain for image ``i``. Optional
        attribute ``input_gradients`` (default false): true makes the images require grad as well, and
        keeps the graph before ``layer``.
        """
        ...

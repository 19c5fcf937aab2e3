"""ONNX through torch.onnx's dynamo exporter, run back with onnxruntime's CPU provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ctframe import CtframeError
from ctframe.api import INPUT_NAME, OUTPUT_NAME

from .options import OnnxOptions

NEEDS = "onnx export needs onnx, onnxscript and onnxruntime: pip install 'ctframe[export]'"


class OnnxExporter:
    suffix = ".onnx"

    def __init__(self, options: OnnxOptions):
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            raise CtframeError(NEEDS) from None
        self.options = options

    def export(
        self, module: nn.Module, example: torch.Tensor, path: Path, metadata: Mapping[str, str]
    ) -> None:
        batch = torch.export.Dim("batch", min=1)
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            input_names=[INPUT_NAME],
            output_names=list(getattr(module, "output_names", (OUTPUT_NAME,))),
            opset_version=self.options.opset,
            optimize=self.options.optimize,
            verbose=False,
        )
        program.model.metadata_props.update(metadata)
        # One self-contained file: exported ctframe models are far below protobuf's 2 GB limit.
        program.save(str(path), external_data=False)

    def load(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(images: np.ndarray) -> np.ndarray:
            return session.run(None, {name: images})[0]

        return run

"""ONNX through torch.onnx's dynamo exporter, run back with onnxruntime's CPU provider."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ctframe import CtframeError
from ctframe.api import INPUT_NAME, OUTPUT_NAME

from .options import OnnxOptions

NEEDS = "onnx export needs onnx, onnxscript and onnxruntime: pip install 'ctframe[export]'"
CONVERTER_LOGGERS = ("onnxscript", "torch.onnx")
"""Where torch.onnx and its opset converter log; what they say is judged by the written opset instead."""


@contextlib.contextmanager
def _quiet(names: Sequence[str]) -> Iterator[None]:
    """Keep these loggers' records (tracebacks included) off the console for the block."""
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.propagate, logger.handlers[:]) for logger in loggers]
    for logger in loggers:
        logger.propagate, logger.handlers = False, [logging.NullHandler()]
    try:
        yield
    finally:
        for logger, (propagate, handlers) in zip(loggers, saved, strict=True):
            logger.propagate, logger.handlers = propagate, handlers


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
        with _quiet(CONVERTER_LOGGERS):  # a failed opset conversion is logged with a traceback, then kept
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
        asked, written = self.options.opset, program.model.opset_imports.get("")
        if asked is not None and written != asked:
            raise CtframeError(
                f"--opset {asked}: torch.onnx could not convert this model to opset {asked} (it gave "
                f"opset {written}); ask for opset {written} or newer, or leave --opset out"
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

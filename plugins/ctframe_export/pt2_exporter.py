"""torch.export programs: the canonical PyTorch artefact (TorchScript's successor)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .options import Pt2Options

METADATA_FILE = "ctframe.json"
"""Extra file inside the ``.pt2`` archive holding the export's metadata
(``torch.export.load(path, extra_files={"ctframe.json": ""})`` reads it back)."""


class Pt2Exporter:
    suffix = ".pt2"

    def __init__(self, options: Pt2Options):
        self.options = options

    def export(
        self, module: nn.Module, example: torch.Tensor, path: Path, metadata: Mapping[str, str]
    ) -> None:
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        with warnings.catch_warnings():  # about weights that share storage; CPU ones are saved right
            warnings.filterwarnings("ignore", message="No complete tensor found")
            torch.export.save(program, str(path), extra_files={METADATA_FILE: json.dumps(dict(metadata))})

    def load(self, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        module = torch.export.load(str(path)).module()

        def run(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                output = module(torch.from_numpy(images))
            return (output[0] if isinstance(output, tuple) else output).numpy()  # the probabilities

        return run

"""Exporting a trained model to a file other runtimes load, and checking that file.

An exporter component (registered through ``ctframe_register_exporters``) writes one format; the core
decides what is exported and checks every export the same way, whoever wrote the exporter:

* the exported graph takes ``uint8`` RGB ``NCHW`` images at the model's input size with any batch
  size, normalises them itself (the backbone does) and returns one fp32 probability per class
  (:class:`ProbabilityModel`), without autocast and without ``torch.compile``;
* the file is re-loaded through the exporter and run on real images (the run's test split, or the
  ``images`` given) in batches of 1, 3 and 8; the largest absolute probability difference from the
  PyTorch model must be at most :data:`TOLERANCE`, or the file is not kept;
* class names, positive class, threshold and input spec go to the exporter (embedded in the file where
  the format allows) and to a sidecar ``<file>.json``.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ctframe.base.contracts import Kind
from ctframe.base.errors import CtframeError
from ctframe.base.filenames import unescape_name
from ctframe.base.model_tools import INPUT_NAME
from ctframe.registry.plugins import get_registry
from ctframe.runtime.components import build_component, component_context
from ctframe.runtime.inference import read_files
from ctframe.runtime.loading import LoadedModel, load_model
from ctframe.storage.files import first_line, write_json
from ctframe.storage.layout import MODELS, PREDICTIONS
from ctframe.storage.modelfile import ModelInfo, find_model, read_model_info
from ctframe.storage.outputs import claim_file
from ctframe.workflows.export_module import DecisionRule, ExportError, exportable, probabilities_of
from ctframe.workflows.export_record import export_record, string_metadata

if TYPE_CHECKING:
    from ctframe.registry.plugins import Registry

TOLERANCE = 1e-4
"""Largest absolute probability difference an export may have from the PyTorch model."""
CHECK_BATCHES = (1, 3, 8)
"""Batch sizes the check runs the exported file with: a fixed batch size would not be noticed."""
EXAMPLE_BATCH = 2
"""Batch size traced at export: 0 and 1 get specialised by torch.export, 2 stays symbolic."""
SIDECAR_SUFFIX = ".json"


# ---------------------------------------------------------------------------------------- check images


def run_test_files(info: ModelInfo) -> list[Path]:
    """The test-split files of the run a model file sits in (its predictions CSV), or ``[]``."""

    folder = info.path.parent
    predictions = PREDICTIONS.path(folder.parent, info.key)
    if folder.name != MODELS.name or not predictions.is_file():
        return []
    with open(predictions, newline="", encoding="utf-8") as handle:
        return [Path(unescape_name(row["file"])) for row in csv.DictReader(handle) if row.get("file")]


def check_images(info: ModelInfo, paths: Sequence[Path], registry: Registry) -> tuple[torch.Tensor, str]:
    """``sum(CHECK_BATCHES)`` images (uint8 ``(N, 3, H, W)``) read as training read them, and where they
    came from: ``paths`` when given, else the run's test split (spread over it, so every class shows)."""

    wanted = sum(CHECK_BATCHES)
    if paths:
        files, source = list(paths), "the given images"
    else:
        files, source = run_test_files(info), "the run's test split"
        if not files:
            raise ExportError(
                f"{info.path}: no test predictions beside this model file to check the export on; "
                "pass images with --images"
            )
        picks = np.unique(np.linspace(0, len(files) - 1, num=min(wanted, len(files))).round().astype(int))
        files = [files[i] for i in picks]
    try:
        read = read_files(info, files, "error", registry)
    except CtframeError as error:
        hint = "" if paths else "; the run's test files must be readable here, or pass --images"
        raise ExportError(f"cannot read the images to check the export on: {error}{hint}") from None
    if len(read.images) == 0:
        raise ExportError("no images to check the export on; pass image files or folders with --images")
    images = torch.stack([torch.as_tensor(read.images[i][0]) for i in range(len(read.images))])
    if len(images) > wanted:
        images = images[np.linspace(0, len(images) - 1, num=wanted).round().astype(int)]
    source = f"{len(images)} images of {source}"
    if len(images) < wanted:  # repeat them: each check batch size must still be run
        images = images[torch.arange(wanted) % len(images)]
    return images.to(torch.uint8), source


def max_abs_difference(
    run: Callable[[np.ndarray], np.ndarray], module: nn.Module, images: torch.Tensor
) -> float:
    """Largest absolute probability difference between ``run`` and ``module`` over the check batches."""
    differences = []
    start = 0
    for size in CHECK_BATCHES:
        batch = images[start : start + size]
        start += size
        with torch.inference_mode():
            expected = probabilities_of(module(batch)).numpy().astype(np.float64)
        got = np.asarray(run(batch.numpy()), dtype=np.float64)
        if got.shape != expected.shape:
            raise ExportError(
                f"the exported file returns shape {got.shape} for a batch of {size}; "
                f"expected {expected.shape}"
            )
        differences.append(np.max(np.abs(got - expected)))
    return float(np.max(differences))  # NaN stays NaN, and fails the check


# ----------------------------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: Path
    sidecar: Path
    export_seconds: float
    check_seconds: float
    max_abs_diff: float
    check_source: str
    size_bytes: int
    tolerance: float = TOLERANCE

    def summary(self) -> str:
        return (
            f"{self.format}: {self.path} ({self.size_bytes / 1e6:.1f} MB), "
            f"exported in {self.export_seconds:.1f} s; "
            f"check on {self.check_source}, batches {'/'.join(map(str, CHECK_BATCHES))}: "
            f"max |p - p_torch| = {self.max_abs_diff:.2e} (<= {self.tolerance:g})"
        )


def input_spec(info: ModelInfo) -> dict[str, Any]:
    channels, height, width = (int(v) for v in info.reading["shape"])
    return {
        "name": INPUT_NAME,
        "dtype": "uint8",
        "layout": "NCHW",
        "channels": "RGB",
        "shape": ["batch", channels, height, width],
        "range": [0, 255],
        "normalisation": "inside the graph",
    }


@contextmanager
def _failures_as(message: str) -> Iterator[None]:
    """An exporter's own exception becomes one ExportError line that starts with ``message``."""
    try:
        yield
    except CtframeError:
        raise
    except Exception as error:
        raise ExportError(f"{message}: {type(error).__name__}: {first_line(error)}") from error


def _output_file(output: Path | None, default: str, model: Path, force: bool) -> Path:
    """The file to write (``default`` in the current folder when none is named) and its sidecar, both
    claimed before the export (:mod:`ctframe.storage.outputs`)."""
    output = Path(output) if output is not None else Path(default)
    inputs = (model, model.with_suffix(".safetensors"))
    claim_file(output, force=force, inputs=inputs)
    claim_file(Path(f"{output}{SIDECAR_SUFFIX}"), force=force, inputs=inputs)
    return output


def _write_sidecar(result: ExportResult, record: dict[str, Any]) -> None:
    """``<output>.json``: the export record with the file's name and how it was checked."""
    record["file"] = result.path.name
    record["check"] = {
        "images": result.check_source,
        "batches": list(CHECK_BATCHES),
        "max_abs_diff": result.max_abs_diff,
        "tolerance": result.tolerance,
        "export_seconds": round(result.export_seconds, 3),
    }
    write_json(result.sidecar, record)


def decision_rule(info: ModelInfo) -> DecisionRule:
    """The model file's locked decision: its threshold and, when it has one, its conformal quantiles."""
    conformal = info.conformal
    quantiles = None if conformal is None else [float(conformal["quantiles"][c]) for c in info.class_names]
    return DecisionRule(info.threshold, quantiles)


# keyword-only options with defaults, one per option of `ctframe export`: the command's library face
def export_model(
    model_or_run: Path,
    format: str,
    output: Path | None = None,
    *,
    model_key: str | None = None,
    options: Mapping[str, Any] | None = None,
    images: Sequence[Path] = (),
    tolerance: float = TOLERANCE,
    decision: bool = False,
    force: bool = False,
    registry: Registry | None = None,
) -> ExportResult:
    """Export one model with the exporter named ``format`` and check the file (see the module docs).

    The file is written under a temporary name and renamed to ``output`` (default ``<key><suffix>`` in
    the current folder) only when the check passes; the sidecar ``<output>.json`` follows it. Either
    existing is replaced only with ``force``.
    """

    registry = registry or get_registry()
    component, exporter_options = build_component(registry, Kind.EXPORTER, format, options, "--format")
    model_file = find_model(model_or_run, model_key)
    exporter = component.factory(exporter_options, component_context())
    key = read_model_info(model_file).key
    output = _output_file(output, f"{key}{exporter.suffix}", model_file, force)  # before any work
    loaded: LoadedModel = load_model(model_file, registry)
    info = loaded.info
    module = exportable(
        loaded.classifier, info.calibration, info.positive_index, decision_rule(info) if decision else None
    )
    pictures, source = check_images(info, images, registry)
    partial = output.with_name(f".partial-{output.name}")
    record = export_record(info, format, registry, input_spec(info), module.output_names)
    start = time.perf_counter()
    try:
        with _failures_as(f"{format} export of model {info.key!r} failed"):
            exporter.export(module, pictures[:EXAMPLE_BATCH].clone(), partial, string_metadata(record))
        exported = time.perf_counter()
        with _failures_as(f"the {format} file of model {info.key!r} does not run"):
            difference = max_abs_difference(exporter.load(partial), module, pictures)
        checked = time.perf_counter()
        if not difference <= tolerance:
            raise ExportError(
                f"the {format} file of model {info.key!r} differs from the PyTorch model by up to "
                f"{difference:.3g} in probability (allowed {tolerance:g}); not written"
            )
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    result = ExportResult(
        format=format,
        path=output,
        sidecar=Path(f"{output}{SIDECAR_SUFFIX}"),
        export_seconds=exported - start,
        check_seconds=checked - exported,
        max_abs_diff=difference,
        check_source=source,
        size_bytes=output.stat().st_size,
        tolerance=tolerance,
    )
    _write_sidecar(result, record)
    return result

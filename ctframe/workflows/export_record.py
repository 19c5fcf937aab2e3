"""What an exported model says about itself (the sidecar ``<file>.json`` and the file's own metadata):
classes, decision rule, input, output and how images were read; never a local path."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ctframe.base.contracts import Kind
from ctframe.base.model_tools import OUTPUT_NAME
from ctframe.base.options import path_fields
from ctframe.base.version import __version__

if TYPE_CHECKING:
    from ctframe.registry.plugins import Registry
    from ctframe.storage.modelfile import ModelInfo

FORMAT = "ctframe-export"


def portable_reading(reading: Mapping[str, Any] | None, registry: Registry) -> dict[str, Any] | None:
    """How images were read, without the dataset's local paths (its root, label tables, key files):
    an export leaves the machine, and a path says where data lives and may name a patient. Options of a
    component that is not installed are judged by their values: absolute paths are left out."""
    if reading is None:
        return None
    portable = dict(reading)
    options = dict(portable.get("options") or {})
    component = registry.get(Kind.DATASET, str(portable.get("component")))
    if component is not None:
        local = [name for name in path_fields(component.options) if options.get(name) is not None]
    else:
        local = [name for name, value in options.items() if isinstance(value, str) and os.path.isabs(value)]
    portable["options"] = {name: (None if name in local else value) for name, value in options.items()}
    portable["local_paths_left_out"] = sorted(local)
    return portable


def operating_point(info: ModelInfo) -> dict[str, Any]:
    """The decision rule as the run locked it, so whoever deploys the file need not re-derive it: the
    threshold and how it was chosen, the recalibration (already inside the graph: listed so it can be
    audited), the conformal quantiles, and the group rule (aggregation, group threshold, unit)."""
    return {
        "positive_class": info.positive_class,
        "threshold": info.threshold,
        "threshold_choice": info.metadata.get("threshold_choice"),
        "validation_rates": info.metadata.get("validation_rates"),
        "calibration": dict(info.calibration),
        "conformal": None if info.conformal is None else dict(info.conformal),
        "group_rule": info.metadata.get("group_rule"),
    }


EXTRA_OUTPUTS = {
    "decision": "int64 (batch,): the class index ctframe predict decides (threshold on the positive class "
    "with two classes, else the most probable class)",
    "set": "bool (batch, classes): the conformal prediction set (class k when 1 - p_k <= its quantile)",
}


def export_record(
    info: ModelInfo,
    exporter_name: str,
    registry: Registry,
    input_spec: Mapping[str, Any],
    output_names: Sequence[str] = (OUTPUT_NAME,),
) -> dict[str, Any]:
    """What an export says about itself: classes, decision rule, input and output; no local path."""

    return {
        "format": FORMAT,
        "exporter": exporter_name,
        "model": {
            "key": info.key,
            "title": info.title,
            "file": info.path.name,
            "weights_sha256": info.metadata["weights"].get("sha256"),
            "backbone": info.metadata["backbone"].get("component"),
            "head": info.metadata["head"].get("component"),
        },
        "class_names": list(info.class_names),
        "positive_class": info.positive_class,
        "threshold": info.threshold,
        "input": dict(input_spec),
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", len(info.class_names)],
            "meaning": "probability of each class, in class_names order, as ctframe predict reports it",
        },
        "extra_outputs": {name: EXTRA_OUTPUTS[name] for name in output_names[1:]},
        "operating_point": operating_point(info),
        "reading": portable_reading(info.reading.get("dataset"), registry),
        "versions": {"ctframe": __version__, "torch": torch.__version__},
    }


def string_metadata(record: Mapping[str, Any]) -> dict[str, str]:
    """The record as ``str -> str`` (what ONNX ``metadata_props`` holds): JSON for anything not a string."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in record.items()}

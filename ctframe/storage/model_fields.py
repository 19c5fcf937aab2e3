"""Every field of a model file's JSON, checked before anything uses it: one line naming the file and field.

A model file is read by predict, evaluate, export, explain, card and ``load_model``; a value that does
not fit (a threshold of ``"abc"``, a positive class that is not a class, a weights file name that leaves
the folder) must stop there with a :class:`ModelFileError`, not surface later as an internal error or as
silently different decisions. Unknown fields are refused too: this ctframe would ignore them.
Components' own options (``backbone.options`` ...) are checked against the installed plugins when the
classifier is rebuilt (:mod:`ctframe.runtime.loading`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ctframe.base.errors import CtframeError


class ModelFileError(CtframeError):
    """A model file that is missing, damaged, tampered with, or no longer fits the installed plugins."""


REQUIRED = ("format", "format_version", "key", "backbone", "head", "class_names", "positive_class", "weights")
REQUIRED += ("input",)
OPTIONAL = ("title", "threshold", "threshold_choice", "group_rule", "calibration", "conformal")
OPTIONAL += ("validation_rates", "versions", "run", "integrity")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class _Refusal(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def _fail(field: str, problem: str) -> None:
    raise _Refusal(field, problem)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(field, f"is {_shown(value)}, not an object")
    return value


def _text(value: Any, field: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        _fail(field, f"is {_shown(value)}, not a non-empty string")


def _number(value: Any, field: str, low: float, high: float, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(field, f"is {_shown(value)}, not a finite number")
    if not low <= value <= high:
        _fail(field, f"is {value!r}, outside [{low:g}, {high:g}]")


def _integer(value: Any, field: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(field, f"is {_shown(value)}, not a whole number >= {low}")


def _component(value: Any, field: str) -> None:
    record = _object(value, field)
    _text(record.get("component"), f"{field}.component")
    _text(record.get("plugin"), f"{field}.plugin", optional=True)
    _object(record.get("options", {}), f"{field}.options")


def _classes(metadata: Mapping[str, Any]) -> list[str]:
    names = metadata["class_names"]
    if not isinstance(names, list) or len(names) < 2:
        _fail("class_names", f"is {_shown(names)}, not a list of at least two class names")
    for index, name in enumerate(names):
        _text(name, f"class_names[{index}]")
    if len(set(names)) != len(names):
        _fail("class_names", f"names a class twice ({_shown(names)})")
    if metadata["positive_class"] not in names:
        _fail("positive_class", f"{_shown(metadata['positive_class'])} is not one of class_names {names}")
    return names


def _threshold_choice(value: Any, field: str) -> None:
    choice = _object(value, field)
    _text(choice.get("method"), f"{field}.method")
    _number(choice.get("value"), f"{field}.value", 0.0, 1.0, optional=True)


def _group_rule(value: Any, _: list[str]) -> None:
    rule = _object(value, "group_rule")
    _text(rule.get("unit"), "group_rule.unit", optional=True)
    aggregate = _object(rule.get("aggregate"), "group_rule.aggregate")
    _text(aggregate.get("method"), "group_rule.aggregate.method")
    if "k" in aggregate:
        _integer(aggregate["k"], "group_rule.aggregate.k", 1)
    if "quantile" in aggregate:
        _number(aggregate["quantile"], "group_rule.aggregate.quantile", 0.0, 1.0)
    if "threshold" not in rule:
        _fail("group_rule.threshold", "is missing")
    _number(rule["threshold"], "group_rule.threshold", 0.0, 1.0, optional=True)
    if rule.get("threshold_choice") is not None:
        _threshold_choice(rule["threshold_choice"], "group_rule.threshold_choice")


_CALIBRATION = {"none": (), "temperature": ("temperature",), "platt": ("scale", "shift")}


def _calibration(value: Any, classes: list[str]) -> None:
    record = _object(value, "calibration")
    method = record.get("method")
    if method not in _CALIBRATION:
        _fail("calibration.method", f"is {_shown(method)}, not one of {', '.join(_CALIBRATION)}")
    if method == "platt" and len(classes) != 2:
        _fail("calibration.method", f"is platt, which needs two classes, not {len(classes)}")
    for name in _CALIBRATION[method]:
        low = 1e-12 if name != "shift" else -math.inf
        _number(record.get(name), f"calibration.{name}", low, math.inf)


def _conformal(value: Any, classes: list[str]) -> None:
    record = _object(value, "conformal")
    _number(record.get("alpha"), "conformal.alpha", 0.0, 1.0)
    if record.get("method") not in ("class_conditional", "marginal"):
        _fail("conformal.method", f"is {_shown(record.get('method'))}, not class_conditional or marginal")
    quantiles = _object(record.get("quantiles"), "conformal.quantiles")
    if sorted(quantiles) != sorted(classes):
        _fail("conformal.quantiles", f"names {sorted(quantiles)}, not the classes {classes}")
    for name in classes:
        _number(quantiles[name], f"conformal.quantiles.{name}", -math.inf, math.inf)


def _input(value: Any, _: list[str]) -> None:
    record = _object(value, "input")
    _component(record.get("dataset"), "input.dataset")
    shape = record.get("shape")
    if shape is not None and (
        not isinstance(shape, list)
        or len(shape) != 3
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape)
    ):
        _fail("input.shape", f"is {_shown(shape)}, not [channels, height, width] of positive whole numbers")


def _file_name(value: Any, field: str) -> None:
    """A plain file name: outputs are named after it (``<key>.onnx``), the weights are found by it."""
    _text(value, field)
    if Path(value).name != value or value in (".", ".."):
        _fail(field, f"is {_shown(value)}: a plain file name is expected, not a path")


def _weights(value: Any, _: list[str]) -> None:
    record = _object(value, "weights")
    _file_name(record.get("file"), "weights.file")
    if not isinstance(record.get("sha256"), str) or not _HEX64.fullmatch(record["sha256"]):
        _fail("weights.sha256", f"is {_shown(record.get('sha256'))}, not 64 lowercase hex digits")
    _integer(record.get("tensors"), "weights.tensors", 0)


def _versions(value: Any, _: list[str]) -> None:
    for name, version in _object(value, "versions").items():
        if not isinstance(version, str):
            _fail(f"versions.{name}", f"is {_shown(version)}, not a version string")


_CHECKS: dict[str, Callable[[Any, list[str]], None]] = {
    "key": lambda value, _: _file_name(value, "key"),
    "title": lambda value, _: _text(value, "title"),
    "backbone": lambda value, _: _component(value, "backbone"),
    "head": lambda value, _: _component(value, "head"),
    "threshold": lambda value, _: _number(value, "threshold", 0.0, 1.0, optional=True),
    "threshold_choice": lambda value, _: _threshold_choice(value, "threshold_choice"),
    "group_rule": _group_rule,
    "calibration": _calibration,
    "conformal": lambda value, classes: None if value is None else _conformal(value, classes),
    "validation_rates": lambda value, _: _object(value, "validation_rates"),
    "input": _input,
    "versions": _versions,
    "run": lambda value, _: _object(value, "run"),
    "weights": _weights,
}


def check_fields(path: Path, metadata: Mapping[str, Any]) -> None:
    """Refuse the first field of ``metadata`` (read from ``path``) that is missing, unknown or does not
    fit, in one line naming the file and the field. ``format`` and ``format_version`` are checked before."""
    missing = [name for name in REQUIRED if name not in metadata]
    unknown = sorted(name for name in metadata if name not in REQUIRED + OPTIONAL)
    if missing:
        raise ModelFileError(f"{path}: field {missing[0]} is missing; the model file was damaged or edited")
    if unknown:
        raise ModelFileError(
            f"{path}: field {unknown[0]} is not a model file field this ctframe knows; the model file was "
            "edited or written by a newer ctframe"
        )
    try:
        classes = _classes(metadata)
        for name, check in _CHECKS.items():
            if name in metadata:
                check(metadata[name], classes)
        if len(classes) > 2 and metadata.get("threshold") is not None:
            _fail("threshold", f"is {metadata['threshold']!r}; a model of {len(classes)} classes has none")
    except _Refusal as refusal:
        raise ModelFileError(
            f"{path}: field {refusal.field} {refusal.problem}; the model file was damaged or edited "
            "(restore it from the run that wrote it)"
        ) from None

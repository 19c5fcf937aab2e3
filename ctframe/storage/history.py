"""``history_<key>.csv``: per-epoch records of a trained model, written by the engine from what the
trainer returns, with the columns the report reads first (:data:`ctframe.base.contracts.HISTORY_COLUMNS`)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ctframe.base.errors import PluginError
from ctframe.base.training import HISTORY_COLUMNS, REQUIRED_HISTORY_COLUMNS
from ctframe.storage.files import write_text
from ctframe.storage.layout import HISTORY


def check_history(records: Sequence[Mapping[str, Any]], who: str) -> None:
    """A trainer's history must carry the required columns as numbers in every record."""
    for index, record in enumerate(records):
        for column in REQUIRED_HISTORY_COLUMNS:
            value = record.get(column)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise PluginError(
                    f"{who}: history record {index} has {column}={value!r}; every record needs a number "
                    f"under {', '.join(REQUIRED_HISTORY_COLUMNS)} (docs/plugins.md, history columns)"
                )


def history_columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    present = {key for record in records for key in record}
    known = [column for column in HISTORY_COLUMNS if column in present]
    extra = sorted(present - set(HISTORY_COLUMNS))
    return known + extra


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_history(folder: Path, key: str, records: Sequence[Mapping[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=history_columns(records), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _cell(v) for k, v in record.items()})
    return write_text(HISTORY.path(folder, key), buffer.getvalue())

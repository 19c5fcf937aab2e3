"""Where subgroup variables come from: a ``--subgroups CSV``, or the dataset's own ``attributes``.

Both give a table: variable -> (sample id -> value), one value for every predicted sample.

The CSV is keyed by file (a ``file`` column, matched to predicted files as ``--groups`` matches them:
:mod:`ctframe.evaluation.given_groups`), else by ``sample_id`` (exactly; a ct_volumes run's
``volumes_manifest.csv`` works as it is), else by group (a ``group`` or ``patient_id``, ``study_id``, ...
column, matched exactly to the predictions' groups). The chosen columns, or by default every column that
is none of those keys, are the subgroup variables. A blank cell is the value ``(blank)``. Every predicted
file (or group) needs a row; rows naming nothing predicted are ignored.

A dataset's attributes (:attr:`ctframe.DataSplits.attributes`, :attr:`ctframe.ReadFiles.attributes`) are
taken as they are, restricted to the predicted samples; a sample without a value gets ``(not recorded)``,
and a variable with one value across them is left out (it would only repeat the overall result).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ctframe.base.errors import DataError
from ctframe.base.filenames import ensure_escaped, escape_path
from ctframe.evaluation import given_groups

BLANK = "(blank)"
NOT_RECORDED = "(not recorded)"
SAMPLE_COLUMN = "sample_id"


def _key_columns(header: list[str], shown: str) -> tuple[str, list[str]]:
    """The column that keys the rows (``file``, else ``sample_id``, else a group column), and every
    key-like column of the header (never a subgroup variable)."""
    try:
        group, _ = given_groups._group_column(header, shown)  # the same names --groups accepts
    except DataError:
        group = None
    keys = [c for c in (given_groups.FILE_COLUMN, SAMPLE_COLUMN) if c in header] + ([group] if group else [])
    if not keys:
        raise DataError(
            f"{shown}: no file, sample_id or group column (group, patient_id, ...); columns: {header[:8]}"
        )
    return keys[0], keys


def _file_keys(rows: list[dict[str, str]], files: Mapping[str, str], shown: str) -> list[list[str]]:
    """For each row, the predicted sample ids its ``file`` names (none, or one)."""
    by_name: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for sample, file in files.items():
        parts = given_groups._parts(file)
        if parts:
            by_name.setdefault(parts[-1], []).append((sample, parts))
    found = []
    for line, row in enumerate(rows, start=2):
        entry = ensure_escaped(row.get(given_groups.FILE_COLUMN) or "")
        _, samples = given_groups._matches(entry, by_name)
        if len(samples) > 1:
            raise DataError(
                f"{shown}, line {line}: {entry} matches {len(samples)} predicted files ({files[samples[0]]}, "
                f"{files[samples[1]]}); give enough of its path to tell them apart"
            )
        found.append(samples)
    return found


def subgroups_from_csv(
    path: Path, files: Mapping[str, str], groups: Mapping[str, str], columns: Sequence[str] = ()
) -> dict[str, dict[str, str]]:
    """Variable -> (sample id -> value) for every predicted sample (``files``: sample id -> file;
    ``groups``: sample id -> group, empty without groups); ``columns`` picks the variables (default:
    every column that is not a key)."""
    path, shown = Path(path), escape_path(Path(path))
    if not path.is_file():
        raise DataError(f"{shown}: subgroups file not found; --subgroups takes a CSV with a file column")
    header, rows = given_groups._rows(path)
    key, key_like = _key_columns(header, shown)
    variables = list(columns) or [c for c in header if c and c not in key_like]
    unknown = [c for c in variables if c not in header or c in key_like]
    if unknown:
        raise DataError(f"{shown}: no subgroup column {unknown[0]!r}; its columns are {header[:12]}")
    if not variables:
        raise DataError(f"{shown}: no subgroup columns beside the key; add columns such as site or scanner")
    predicted = set(files) | set(groups)
    if key == given_groups.FILE_COLUMN:
        if not any(files.values()):
            raise DataError(f"{shown}: the predictions name no files; key the CSV by sample_id or group")
        keys, what, covered = _file_keys(rows, files, shown), "file", set(files)
    elif key == SAMPLE_COLUMN:
        names = [(row.get(key) or "").strip() for row in rows]
        keys = [[name] if name in predicted else [] for name in names]
        what, covered = "sample", predicted
    else:
        if not groups:
            raise DataError(f"{shown}: keyed by {key} but the predictions have no groups; add a file column")
        members: dict[str, list[str]] = {}
        for sample, group in groups.items():
            members.setdefault(group, []).append(sample)
        keys = [members.get((row.get(key) or "").strip(), []) for row in rows]
        what, covered = key, set(groups)
    table: dict[str, dict[str, str]] = {name: {} for name in variables}
    for line, (row, samples) in enumerate(zip(rows, keys, strict=True), start=2):
        for name in variables:
            value = (row.get(name) or "").strip() or BLANK
            for sample in samples:
                if table[name].setdefault(sample, value) != value:
                    raise DataError(f"{shown}, line {line}: a second, different {name} for the same {what}")
    missing = sorted(s for s in covered if s not in table[variables[0]])
    if missing:
        first = files.get(missing[0]) or missing[0]
        raise DataError(
            f"{shown}: {len(missing)} predicted file(s) have no row (first: {first}); add a row per {what}"
        )
    return table


def subgroups_from_attributes(
    attributes: Mapping[str, Mapping[str, str]], samples: Sequence[str]
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The table for ``samples`` from a dataset's attributes, and the variables left out because the
    samples share one value (variable -> that value)."""
    table: dict[str, dict[str, str]] = {}
    constant: dict[str, str] = {}
    for variable, values in attributes.items():
        column = {s: str(values.get(s) or "").strip() or NOT_RECORDED for s in samples}
        seen = set(column.values())
        if len(seen) > 1:
            table[str(variable)] = column
        elif seen:
            constant[str(variable)] = seen.pop()
    return table, constant

"""The report keeps a predictions file column by column (CsvRows): the same rows as csv.DictReader gives,
blank lines skipped, short rows filled with "", repeated values shared, slices and negative indices."""

from __future__ import annotations

import csv
import io

import pytest

from ctframe.report.artifacts import CsvRows

TEXT = "sample_id,true_class,p_a\ns1,a,0.1\n\ns2,b,0.9\ns3,a\n"


def test_rows_are_the_dict_readers():
    rows = CsvRows(*_split(TEXT))
    expected = [{k: v or "" for k, v in row.items()} for row in csv.DictReader(io.StringIO(TEXT))]
    assert len(rows) == 3 and list(rows) == expected
    assert rows[-1] == {"sample_id": "s3", "true_class": "a", "p_a": ""}
    assert rows[:1] == expected[:1] and rows[5:] == []
    with pytest.raises(IndexError):
        rows[3]


def test_repeated_values_are_one_string():
    text = "true_class\n" + "".join(f"{'COVID' if i % 2 else 'non-COVID'}\n" for i in range(2000))
    rows = CsvRows(*_split(text))
    assert rows.columns[0][1] is rows.columns[0][3]


def _split(text: str):
    reader = csv.reader(io.StringIO(text))
    return next(reader), reader

"""folder_split says what its groups are (DataSplits.group_unit): names of the group-level results."""

from __future__ import annotations

import csv

from folder_split_support import CLASSES, build, make_folder


def test_group_unit_follows_the_grouping(tmp_path):
    make_folder(tmp_path / "data", per_class=12)
    assert build(tmp_path / "data").group_unit == "group"  # no groups at all
    table = tmp_path / "patients.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "patient_id", "site"])
        for class_name in CLASSES:
            for k in range(12):
                writer.writerow(
                    [f"{class_name}/img{k:03d}.png", f"{class_name}-p{k // 3}", f"{class_name}-s{k // 2}"]
                )
    by_patient = build(tmp_path / "data", group_by=str(table), group_column="patient_id")
    assert by_patient.group_unit == "patient" and len(set(by_patient.groups.values())) == 8
    by_site = build(tmp_path / "data", group_by=str(table), group_column="site")
    assert by_site.group_unit == "group"  # a column that names no unit
    by_regex = build(tmp_path / "data", group_by=r"regex:^(.*)\.png$")
    assert by_regex.group_unit == "group"

"""folder_split's own report sections (groups and duplicates, the leakage check), added through the
``ctframe_report_sections`` hook: present for its runs when it is loaded, absent otherwise."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ctframe.registry.plugins import PLUGINS_ENV
from ctframe.report import build_report
from ctframe.storage.files import write_json
from tests.core.test_report import (
    CORE_SECTIONS,
    GROUPED_SECTIONS,
    SECTIONS,
    SPLIT_SUMMARY,
    make_run,
    sections_of,
)

SUMMARY = {  # what folder_split adds to the engine's split summary (the keys its sections read)
    **SPLIT_SUMMARY,
    "group_by": "sequence",
    "groups": {
        "train": {"COVID": 6, "non-COVID": 6},
        "val": {"COVID": 3, "non-COVID": 2},
        "test": {"COVID": 5, "non-COVID": 4},
    },
    "duplicates": {
        "sets": 1,
        "files": 2,
        "across_classes": 0,
        "examples": [["COVID/Covid (128).png", "COVID/Covid (129).png"]],
    },
    "grouping": {"mode": "sequence", "lines": [], "warnings": ["one group holds 40% of COVID"]},
}
LEAKAGE = {
    "level": 0.95,
    "tolerance": 0.02,
    "n_test": 100,
    "count_above": 1,
    "share_above": 0.01,
    "chance_share": 0.0,
    "median_nearest": 0.7041,
    "loud": False,
    "profile": [
        {"level": 0.85, "share_above": 0.12, "chance_share": 0.05},
        {"level": 0.95, "share_above": 0.01, "chance_share": 0.0},
    ],
    "worst_pairs": [{"test": "COVID/Covid (77).png", "train": "COVID/Covid (15).png", "similarity": 0.9612}],
}
RAW_KEYS = ("count_above", "share_above", "chance_share", "loud", "n_test", "worst_pairs", "across_classes")
PLUGINS = "folder_split,classification_metrics"


def folder_split_run(folder: Path, monkeypatch) -> Path:
    """The core's files of a complete run plus what folder_split writes: its summary keys, the
    manifest (one group per 4 files, never shared between splits) and the leakage check."""
    run = make_run(folder, monkeypatch)
    write_json(run / "split_summary.json", SUMMARY)
    write_json(run / "leakage.json", LEAKAGE)
    with (run / "split_manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "sha256", "class", "split", "group", "status"])
        index = 0
        for split, per_class in SUMMARY["counts"].items():
            for name, count in per_class.items():
                for _ in range(count):
                    writer.writerow(
                        [f"img{index}.png", f"{index:064x}", name, split, f"{split}{index // 4}", "ok"]
                    )
                    index += 1
    monkeypatch.setenv(PLUGINS_ENV, PLUGINS)
    return run


UNGROUPED = [section for section in SECTIONS if section not in GROUPED_SECTIONS]
"""The made-up runs here have no group-level metrics, so no per-group view."""


def _report(run: Path) -> dict[str, str]:
    return sections_of(build_report(run).read_text(encoding="utf-8"))


def _visible(fragment: str) -> str:
    """What a reader sees without opening the collapsed raw records."""
    return re.sub(r"<details>.*?</details>", "", fragment, flags=re.S)


def test_groups_duplicates_and_leakage_are_written_for_a_person(tmp_path, monkeypatch):
    run = folder_split_run(tmp_path / "run", monkeypatch)
    found = _report(run)
    assert list(found) == UNGROUPED  # right after the core's data split, as one story
    assert 'class="missing"' not in "".join(found.values())
    groups, leakage = _visible(found["split_groups"]), _visible(found["leakage"])
    assert groups.startswith(
        '\n<h2>Groups and duplicates</h2>\n<p class="verdict">Each sequence group stays in one split '
        "(26 groups); no group has files in two splits. 1 set of identical files (2 files).</p>"
    )
    assert (
        "<h3>Groups per class and split</h3>" in groups
        and '<td>COVID</td><td class="number">6</td>' in groups
    )
    assert '<p class="warning">Warning: one group holds 40% of COVID</p>' in groups
    assert "COVID/Covid (128).png" in groups and "lists the same 160 files" in groups
    assert "Files per split and class (split_manifest.csv)" in found["split_groups"]  # collapsed
    assert leakage.startswith(
        '\n<h2>Leakage check</h2>\n<p class="verdict">No sign of leakage at similarity 0.95: 1 of 100 test '
        "images (1.0%)"
    )
    for heading in ("<th>Measure</th>", "<th>Similarity at least</th>", "<th>Closest training image</th>"):
        assert heading in leakage
    assert "Covid (15).png" in leakage and "A grouped split keeps near-copies together" in leakage
    for key in RAW_KEYS:
        assert key not in groups and key not in leakage, key
    assert "group_by" in found["split"]  # the core's section keeps the whole record, collapsed

    write_json(run / "leakage.json", dict(LEAKAGE, count_above=40, share_above=0.4, loud=True))
    rows = (run / "split_manifest.csv").read_text().splitlines()
    rows[1] = rows[1].replace(",train0,", ",test15,")  # one training file in a test group
    (run / "split_manifest.csv").write_text("\n".join(rows) + "\n")
    found = _report(run)
    assert '<p class="verdict bad">Likely leakage: 40 of 100 test images (40.0%)' in found["leakage"]
    assert (
        '<p class="verdict bad">Each sequence group stays in one split (26 groups); yet 1 group has files '
        "in more than one split." in found["split_groups"]
    )
    assert "disagrees" not in found["split_groups"]  # same counts, only the group moved

    (run / "split_manifest.csv").write_text("\n".join(rows[:-1]) + "\n")  # a test file fewer
    groups = sections_of(build_report(run).read_text(encoding="utf-8"))["split_groups"]
    assert '<p class="warning">split_manifest.csv disagrees with the images per class' in groups


def test_the_sections_come_with_the_plugin_and_only_for_its_runs(tmp_path, monkeypatch):
    run = folder_split_run(tmp_path / "run", monkeypatch)
    assert list(_report(run)) == UNGROUPED
    monkeypatch.setenv(PLUGINS_ENV, "classification_metrics")  # folder_split not loaded
    found = _report(run)
    assert list(found) == CORE_SECTIONS
    assert "Each sequence group" not in found["split"] and "Covid (15).png" not in "".join(found.values())

    other = make_run(tmp_path / "other", monkeypatch)  # another dataset's run, folder_split loaded
    recipe = (
        (other / "recipe.toml").read_text().replace('component = "folder_split"', 'component = "toy_data"')
    )
    (other / "recipe.toml").write_text(recipe)
    monkeypatch.setenv(PLUGINS_ENV, PLUGINS)
    found = sections_of(build_report(other).read_text(encoding="utf-8"))
    assert list(found) == CORE_SECTIONS and "leakage" not in "".join(found.values()).lower()


def test_an_ungrouped_run_and_damaged_files(tmp_path, monkeypatch):
    run = folder_split_run(tmp_path / "run", monkeypatch)
    summary = {key: value for key, value in SUMMARY.items() if key not in ("groups", "grouping")}
    write_json(run / "split_summary.json", dict(summary, group_by=None, leakage=LEAKAGE))
    (run / "leakage.json").unlink()  # the summary's copy stands in
    (run / "split_manifest.csv").unlink()
    found = _report(run)
    assert '<p class="verdict">Split image by image, not by group' in found["split_groups"]
    assert "split_manifest.csv is missing: no per-file record of the split." in found["split_groups"]
    assert "No sign of leakage" in found["leakage"] and "A grouped split" not in found["leakage"]

    (run / "leakage.json").write_text("{not json")
    (run / "split_manifest.csv").write_bytes(b"\xff\xfe not utf-8")
    found = _report(run)
    assert '<p class="missing">leakage.json is unreadable: ' in found["leakage"]
    assert '<p class="missing">split_manifest.csv is unreadable: ' in found["split_groups"]
    assert "could not be built" not in "".join(found.values())

    (run / "split_summary.json").unlink()
    (run / "leakage.json").unlink()
    found = _report(run)
    assert "No leakage check was recorded" in found["leakage"]
    assert list(found) == UNGROUPED  # the recipe names folder_split: its sections say what is missing

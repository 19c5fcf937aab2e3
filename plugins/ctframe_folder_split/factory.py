"""The ``folder_split`` dataset factory: check, scan, group, split, record, and hand out datasets."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctframe import BuildContext, DataError, DataSplits
from ctframe.api import escape_path
from ctframe.api.data import SPLITS, Item, assign_all_to_test, split_or_fold
from ctframe_folder_split.cache import DiskStore, MemoryStore, NoStore, Store
from ctframe_folder_split.dataset import FolderImageDataset, build_augment
from ctframe_folder_split.files import Discovery, check_layout, discover
from ctframe_folder_split.grouping import groups_from_csv, groups_from_regex, listing
from ctframe_folder_split.manifest import ManifestRow, check_unchanged, read_manifest, write_manifest
from ctframe_folder_split.options import FolderSplitOptions
from ctframe_folder_split.run_files import SPLIT, SPLIT_MANIFEST
from ctframe_folder_split.scan import Record, check_files, scan
from ctframe_folder_split.similarity import leakage_summary, sequence_grouping
from ctframe_folder_split.summary import grouping_summary, split_summary


def check(options: FolderSplitOptions, context: BuildContext) -> None:
    """The dataset's check, before a run directory exists: the paths, and with on_bad_image = "error"
    every file's header (:func:`scan.check_files`), so that a bad image is refused before anything
    is created rather than after."""
    check_paths(options, context)
    if options.on_bad_image == "error":
        entries = discover(options.root, options.classes).entries
        _report_bad(options, check_files(entries, options.max_image_pixels, options.num_workers), context)


def check_paths(options: FolderSplitOptions, context: BuildContext) -> None:
    """Cheap checks before any file is read (and demo data generation when asked for)."""
    if options.demo_if_missing:
        from ctframe_folder_split.demo import check_demo_version, generate_demo_data

        if not options.root.exists():
            context.logger.info(
                "dataset root %s is missing: generating the synthetic demo data there",
                escape_path(options.root),
            )
            generate_demo_data(options.root)
        check_demo_version(options.root)
    check_layout(options.root, options.classes, options.download_hint)
    csv_path = options.group_csv(context.recipe_dir)
    if csv_path is not None and not csv_path.is_file():
        raise DataError(f"group_by file {csv_path} does not exist; fix dataset.group_by")
    if options.reuse_manifest is not None:
        read_manifest(options.reuse_manifest)  # a cut or foreign manifest is refused before the run starts


def _make_store(options: FolderSplitOptions, count: int) -> Store:
    if options.cache == "memory":
        return MemoryStore(count, options.image_size)
    if options.cache == "disk":
        return DiskStore(options.resolved_cache_dir(), options.image_size)
    return NoStore(options.image_size, options.max_image_pixels)


def _group_labels(
    options: FolderSplitOptions, context: BuildContext, good: Sequence[Record]
) -> tuple[list[str | None], dict[str, Any] | None]:
    """Group label per record, and what the sequence links did per class (``None`` for other modes)."""
    sample_ids = [record.entry.sample_id for record in good]
    if options.group_by is None:
        return [None] * len(good), None
    if options.group_by.startswith("regex:"):
        return list(groups_from_regex(sample_ids, options.group_by[len("regex:") :])), None
    if options.group_by == "sequence":
        started = time.perf_counter()
        labels, links = sequence_grouping(options, good)
        elapsed = time.perf_counter() - started
        context.logger.info("sequence grouping of %d images took %.2f s", len(good), elapsed)
        return list(labels), links
    csv_path = options.group_csv(context.recipe_dir)
    assert csv_path is not None
    return list(groups_from_csv(sample_ids, csv_path, options.group_column)), None


def _report_bad(options: FolderSplitOptions, bad: Sequence[Record], context: BuildContext) -> None:
    if not bad:
        return
    described = [f"{record.entry.sample_id} ({record.problem})" for record in bad]
    if options.on_bad_image == "error":
        raise DataError(
            f"{len(bad)} unusable file(s) under {escape_path(options.root)}: {listing(described)}; "
            'fix or remove them, or set dataset.on_bad_image = "skip"'
        )
    for line in described:
        context.logger.warning("skipping %s", line)


def _split_rows(
    options: FolderSplitOptions, context: BuildContext, records: Sequence[Record]
) -> tuple[list[ManifestRow], bool, dict[str, Any] | None]:
    """Manifest rows for every record: from the recorded manifest when there is one, else split afresh;
    and the sequence links per class when they were computed."""
    fresh = [
        ManifestRow(
            r.entry.sample_id, r.sha256, r.entry.class_name, "", "", "ok" if r.ok else f"skipped: {r.problem}"
        )
        for r in records
    ]
    recorded_path: Path | None = None
    if context.run_dir is not None and SPLIT_MANIFEST.path(context.run_dir).exists():
        recorded_path = SPLIT_MANIFEST.path(context.run_dir)
    elif options.reuse_manifest is not None:
        recorded_path = options.reuse_manifest
    if recorded_path is not None:
        recorded = read_manifest(recorded_path)
        check_unchanged(recorded, fresh, recorded_path)
        by_file = {row.file: row for row in recorded}
        context.logger.info("reusing the split recorded in %s", escape_path(recorded_path))
        return [by_file[row.file] for row in fresh], True, None

    good = [r for r in records if r.ok]
    labels, links = _group_labels(options, context, good)
    items = [
        Item(r.entry.sample_id, r.sha256, options.classes.index(r.entry.class_name), label)
        for r, label in zip(good, labels, strict=True)
    ]
    if options.test_only:
        splits, groups = assign_all_to_test(items, context.seed)
    else:
        fractions = (options.test_fraction, options.val_fraction)
        splits, groups = split_or_fold(items, options.classes, fractions, context.seed, context.fold)
    placed = {
        item.sample_id: (split, group) for item, split, group in zip(items, splits, groups, strict=True)
    }
    rows = [
        ManifestRow(row.file, row.sha256, row.class_name, *placed.get(row.file, ("", "")), row.status)
        for row in fresh
    ]
    return rows, False, links


UNITS = ("patient", "subject", "case", "study", "scan", "series")
"""Group column names (without an ``_id`` ending) that say what a group is; others give "group"."""


def group_unit(options: FolderSplitOptions) -> str:
    """What a group is, for the group-level results: "sequence" for sequence grouping, the CSV's group
    column when it names a unit ("patient_id" -> "patient"), else "group"."""
    if options.group_by == "sequence":
        return "sequence"
    if options.group_by is None or options.group_by.startswith("regex:"):
        return "group"
    column = options.group_column.strip().lower().removesuffix("id").rstrip("_ -")
    return column if column in UNITS else "group"


def build_folder_split(options: FolderSplitOptions, context: BuildContext) -> DataSplits:
    check_paths(options, context)  # the scan below finds bad files itself
    discovery, store, records = _read_images(options, context)
    rows, reused, links = _split_rows(options, context, records)
    if context.run_dir is not None:
        write_manifest(SPLIT_MANIFEST.path(context.run_dir), rows)
    datasets = _datasets(options, store, records, rows)
    summary = split_summary(options, context, discovery, records, rows, reused)
    if context.fold is not None:
        summary["fold"] = list(context.fold)  # tells the engine the fold was honoured
    if options.group_by is not None:
        summary["grouping"] = grouping_summary(options, context, rows, links)
        summary["lines"] = [f"groups {line}" for line in summary["grouping"]["lines"]]  # shown by validate
    materialized = _materialize(options, context, rows, records)
    if materialized is not None:
        summary["materialized"] = materialized
    if options.leakage_check:
        good = [record for record in records if record.ok]
        summary["leakage"] = leakage_summary(
            options,
            context,
            {split: dataset.sample_ids for split, dataset in datasets.items()},
            {record.entry.sample_id: record.entry.class_name for record in good},
            {record.entry.sample_id: record.thumbnail for record in good},
        )
    return DataSplits(
        class_names=tuple(options.classes),
        positive_class=options.positive,
        train=datasets["train"],
        val=datasets["val"],
        test=datasets["test"],
        augment=build_augment(options.rotation_degrees, options.horizontal_flip, options.zoom_range),
        num_workers=options.num_workers,
        files={record.entry.sample_id: escape_path(record.entry.path) for record in records if record.ok},
        summary=summary,
        groups={row.file: row.group for row in rows if row.split} if options.group_by is not None else {},
        group_unit=group_unit(options),
    )


def _read_images(options: FolderSplitOptions, context: BuildContext) -> tuple[Discovery, Store, list[Record]]:
    """Find, read, check and cache every file; stop here (before any training) on bad files."""
    started = time.perf_counter()
    discovery = discover(options.root, options.classes)
    if discovery.ignored:
        context.logger.info(
            "ignoring %d hidden file(s): %s", len(discovery.ignored), listing(discovery.ignored)
        )
    store = _make_store(options, len(discovery.entries))
    thumbnails = options.leakage_check or options.group_by == "sequence"
    total = len(discovery.entries)
    step = max(total // 10, 500)  # a line every 10 % on large folders, none on small ones

    def progress(done: int) -> None:
        if done % step == 0 and done < total:
            context.logger.info("read %d of %d files", done, total)

    records = scan(
        discovery.entries,
        store,
        options.image_size,
        options.max_image_pixels,
        options.num_workers,
        thumbnails,
        progress,
    )
    bad = [record for record in records if not record.ok]
    _report_bad(options, bad, context)
    usable = Counter(record.entry.class_name for record in records if record.ok)
    left_empty = [c for c in options.classes if usable[c] == 0]
    if left_empty:
        raise DataError(
            f"class(es) {', '.join(left_empty)} have no usable image left after skipping bad files"
        )
    context.logger.info("read %d images in %.1f s", sum(usable.values()), time.perf_counter() - started)
    return discovery, store, records


def _datasets(
    options: FolderSplitOptions, store: Store, records: Sequence[Record], rows: Sequence[ManifestRow]
) -> dict[str, FolderImageDataset]:
    index_of = {record.entry.sample_id: i for i, record in enumerate(records)}
    datasets = {}
    for split in SPLITS:
        chosen = [row for row in rows if row.split == split]
        positions = [index_of[row.file] for row in chosen]
        datasets[split] = FolderImageDataset(
            store,
            positions,
            [row.sha256 for row in chosen],
            [records[i].entry.path for i in positions],
            [options.classes.index(row.class_name) for row in chosen],
            [row.file for row in chosen],
        )
    return datasets


def _materialize(
    options: FolderSplitOptions, context: BuildContext, rows: Sequence[ManifestRow], records: Sequence[Record]
) -> dict | None:
    if options.materialize == "none":
        return None
    target = options.materialize_dir
    if target is None:
        if context.run_dir is None:
            return None  # validating: nothing to lay out
        target = SPLIT.path(context.run_dir)
    from ctframe_folder_split.materialize import materialize

    paths = {record.entry.sample_id: record.entry.path for record in records}
    counts = materialize(options.root, rows, target, options.materialize, paths)
    context.logger.info("materialised the split under %s: %s", escape_path(target), counts)
    return {"folder": escape_path(target), **counts}

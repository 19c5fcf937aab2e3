"""The ``ct_volumes`` dataset factory: discover, label, pseudonymise, split by patient, window.

Raw patient, study and series ids stay inside this module and volumes.py: sample ids are
``<series pseudonym>/<slice index>``, groups are patient pseudonyms, and ``files`` maps each sample
id to that same name (folder names can hold patient names, so no path leaves either).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

import torch

from ctframe import BuildContext, DataError, DataSplits
from ctframe.api.data import Item, split_or_fold
from ctframe_ct_volumes.cache import SliceCache, writable_folder
from ctframe_ct_volumes.dataset import SeriesImages, SliceDataset
from ctframe_ct_volumes.discover import discover
from ctframe_ct_volumes.labels import label_volumes
from ctframe_ct_volumes.manifest import manifest_rows, record_manifest
from ctframe_ct_volumes.options import CtVolumesOptions
from ctframe_ct_volumes.pseudonym import Pseudonymizer, load_key, make_pseudonymizer
from ctframe_ct_volumes.subgroups import attributes
from ctframe_ct_volumes.volumes import Volume, sample_id, slice_images, volumes_of

SPLITS = ("train", "val", "test")
UNLABELLED = "series without a label"
NO_SLICES = "series without selected slices"

SeriesSlices = tuple[list[int], SeriesImages]
"""A series' selected slice indices and their images (a cache entry's path, or tensors)."""


def check(options: CtVolumesOptions, context: BuildContext) -> None:
    """Cheap checks before a run directory exists: the root, the labels file, the pseudonym key."""
    if not options.root.is_dir():
        raise DataError(f"dataset root {options.root} is not a folder; fix dataset.root")
    if options.labels is not None and not options.labels.is_file():
        raise DataError(f"labels file {options.labels} does not exist; fix dataset.labels")
    if options.labels is None:
        missing = [name for name in options.classes if not (options.root / name).is_dir()]
        if missing:
            raise DataError(
                f"no labels file and no class folder(s) {', '.join(missing)} under {options.root}; "
                "set dataset.labels or put each class's scans in a folder named after it"
            )
    if load_key(options.pseudonym_key_file) is None and not options.raw_ids:
        Pseudonymizer(None)  # raises the one-line error that says how to provide a key
    if options.cache:
        writable_folder(options.cache_folder())


def _split(
    options: CtVolumesOptions, context: BuildContext, volumes: Sequence[Volume], labels: Sequence[int]
) -> list[str]:
    """Split per volume; a patient's volumes stay together (group = patient pseudonym)."""
    items = [
        Item(volume.name, hashlib.sha256(volume.name.encode()).hexdigest(), label, volume.patient)
        for volume, label in zip(volumes, labels, strict=True)
    ]
    fractions = (options.test_fraction, options.val_fraction)
    splits, _ = split_or_fold(items, options.classes, fractions, context.seed, context.fold)
    return list(splits)


def _decode(
    options: CtVolumesOptions, volumes: Sequence[Volume], context: BuildContext
) -> list[SeriesSlices]:
    """Per volume its selected slices, one series at a time: with the cache, each is written to its
    entry (or read back from it) before the next is decoded, so memory holds one series at most."""
    windows = options.channel_windows()

    def decode(volume: Volume) -> tuple[list[int], list[torch.Tensor]]:
        slices = slice_images(volume.load(), windows, options.slices, options.slice_step, options.image_size)
        return [index for index, _ in slices], [image for _, image in slices]

    if not options.cache:
        return [decode(volume) for volume in volumes]
    cache = SliceCache(options, context.logger)
    decoded = [cache.series(volume, decode) for volume in volumes]
    context.logger.info(cache.summary())
    return decoded


def _datasets(
    options: CtVolumesOptions,
    kept: Sequence[tuple[tuple[Volume, str], SeriesSlices]],
    labels: Sequence[int],
    splits: Sequence[str],
) -> tuple[dict[str, SliceDataset], dict[str, dict]]:
    """The three SliceDatasets, and series and slice counts per split and class."""
    images = [images for _, (_, images) in kept]
    datasets: dict[str, SliceDataset] = {}
    counts: dict[str, dict] = {}
    for split in SPLITS:
        entries, item_labels, ids = [], [], []
        series_counts: Counter[str] = Counter()
        for position, ((volume, label), (indices, _)) in enumerate(kept):
            if splits[position] != split:
                continue
            series_counts[label] += 1
            for index, slice_index in enumerate(indices):
                entries.append((position, index))
                item_labels.append(labels[position])
                ids.append(sample_id(volume.name, slice_index))
        datasets[split] = SliceDataset(images, entries, item_labels, ids)
        slice_counts = Counter(options.classes[label] for label in item_labels)
        counts[split] = {
            name: {"series": series_counts[name], "slices": slice_counts[name]} for name in options.classes
        }
    return datasets, counts


def build(options: CtVolumesOptions, context: BuildContext) -> DataSplits:
    check(options, context)
    pseudonym = make_pseudonymizer(options.pseudonym_key_file, raw_ids=options.raw_ids, logger=context.logger)
    discovery = discover(options.root)
    skipped = Counter(discovery.skipped)
    volumes = volumes_of(discovery, pseudonym)
    found = label_volumes(volumes, options.labels, options.label_key, options.classes)
    unlabelled = [volume.name for volume, label in zip(volumes, found, strict=True) if label is None]
    if unlabelled:
        skipped[UNLABELLED] = len(unlabelled)
        context.logger.info("leaving out %d unlabelled series: %s", len(unlabelled), ", ".join(unlabelled))
    labelled = [(volume, label) for volume, label in zip(volumes, found, strict=True) if label is not None]
    decoded = _decode(options, [volume for volume, _ in labelled], context)
    empty = [volume.name for (volume, _), (indices, _) in zip(labelled, decoded, strict=True) if not indices]
    if empty:
        skipped[NO_SLICES] = len(empty)
        context.logger.info("leaving out %d series with no selected slice: %s", len(empty), ", ".join(empty))
    kept = [(pair, slices) for pair, slices in zip(labelled, decoded, strict=True) if slices[0]]
    if not kept:
        raise DataError(
            f"no labelled series with selected slices under {options.root}: {discovery.summary()}"
        )
    volumes = [volume for (volume, _), _ in kept]
    labels = [options.classes.index(label) for (_, label), _ in kept]
    splits = _split(options, context, volumes, labels)
    if context.run_dir is not None:
        indices = [indices for _, (indices, _) in kept]
        names = [label for (_, label), _ in kept]
        record_manifest(context.run_dir, manifest_rows(volumes, indices, names, splits))
    datasets, counts = _datasets(options, kept, labels, splits)
    summary = _summary(options, context, volumes, splits, counts, skipped)
    of_sample = {
        sample: volumes[position]
        for split in SPLITS
        for sample, (position, _) in zip(datasets[split].sample_ids, datasets[split].entries, strict=True)
    }
    groups = {sample: volume.patient for sample, volume in of_sample.items()}
    offered = attributes(((s, v.technical) for s, v in of_sample.items()), options.subgroups)
    return DataSplits(
        class_names=tuple(options.classes),
        positive_class=options.positive,
        train=datasets["train"],
        val=datasets["val"],
        test=datasets["test"],
        files={sample: sample for sample in groups},
        summary=summary,
        groups=groups,
        group_unit="patient",
        attributes=offered,
    )


def _summary(
    options: CtVolumesOptions,
    context: BuildContext,
    volumes: Sequence[Volume],
    splits: Sequence[str],
    counts: dict,
    skipped: Counter,
) -> dict:
    patients = {
        split: len({v.patient for v, s in zip(volumes, splits, strict=True) if s == split})
        for split in SPLITS
    }
    lines = [
        f"{len({v.patient for v in volumes})} patients, {len(volumes)} series; "
        + ", ".join(
            f"{split}: {patients[split]} patients, "
            + ", ".join(
                f"{name} {c['series']} series/{c['slices']} slices" for name, c in counts[split].items()
            )
            for split in SPLITS
        )
    ]
    if skipped:
        lines.append(
            "skipped: " + ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
        )
    summary = {
        "counts": counts,
        "patients": len({v.patient for v in volumes}),
        "series": len(volumes),
        "patients_per_split": patients,
        "skipped": dict(sorted(skipped.items())),
        "windows": [list(w) if isinstance(w, tuple) else w for w in options.channel_windows()],
        "slices": options.slices,
        "lines": lines,
    }
    if context.fold is not None:
        summary["fold"] = list(context.fold)  # tells the engine the fold was honoured
    return summary

"""The labelled sets ``ctframe evaluate`` reads: class folders through the model's own reader, or any
dataset component's test split from a TOML ``[dataset]`` table; data classes mapped onto the model's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctframe.base.contracts import BuildContext, DataSplits, Kind
from ctframe.base.errors import DataError
from ctframe.base.filenames import escape_path
from ctframe.registry.recipe import component_config, read_recipe_file
from ctframe.runtime.inference import file_reader
from ctframe.storage.modelfile import ModelInfo

if TYPE_CHECKING:
    from ctframe.registry.plugins import Registry


def parse_class_map(text: str | None) -> dict[str, str]:
    """``"CT_COVID=COVID,CT_NonCOVID=non-COVID"`` -> data class name -> model class name."""
    mapping: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise DataError(
                f"--class-map expects DATA_CLASS=MODEL_CLASS pairs separated by commas, got {item!r}"
            )
        mapping[source.strip()] = target.strip()
    return mapping


@dataclass(frozen=True)
class ExternalSet:
    """Labelled external images, with labels as indices into the model's classes."""

    images: Any
    files: Mapping[str, str]
    class_counts: Mapping[str, int] | None
    """Images per model class, when known before predicting (else counted from the predictions)."""
    skipped: Sequence[tuple[str, str]]
    num_workers: int = 0
    groups: Mapping[str, str] = field(default_factory=dict)
    """Sample id -> group (patient, series), when the data or ``--groups`` says: both levels are reported."""
    group_unit: str = "group"
    attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Subgroup variable -> (sample id -> value), from the reader or dataset (``ReadFiles.attributes``)."""
    ignored: tuple[str, ...] = ()
    """Sub-folders left out because they hold no image file."""
    files_beyond_test: bool = False
    """``files`` also names samples that are not evaluated (a dataset file's train and val splits):
    what is evaluated is known only once predicted."""


class _Labelled:
    """Items of a reader's dataset with the labels the class folders give them."""

    def __init__(self, parts: Sequence[tuple[Any, int]]):
        self.index = [
            (dataset, position, label) for dataset, label in parts for position in range(len(dataset))
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int):
        dataset, position, label = self.index[item]
        image, _, sample_id = dataset[position]
        return image, label, sample_id


class _Relabelled:
    """A dataset's items with its label indices turned into the model's."""

    def __init__(self, dataset: Any, model_label: Sequence[int]):
        self.dataset, self.model_label = dataset, list(model_label)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int):
        image, label, sample_id = self.dataset[item]
        return image, self.model_label[int(label)], sample_id


def _map_classes(found: Sequence[str], model_classes: Sequence[str], mapping: Mapping[str, str]) -> dict:
    unknown_targets = sorted(set(mapping.values()) - set(model_classes))
    if unknown_targets:
        raise DataError(
            f"--class-map maps to {', '.join(map(repr, unknown_targets))}, which the model does not know; "
            f"its classes are {list(model_classes)}"
        )
    unused = sorted(set(mapping) - set(found))
    if unused:
        raise DataError(
            f"--class-map names {', '.join(map(repr, unused))}, which the data does not have: {list(found)}"
        )
    resolved = {name: mapping.get(name, name) for name in found}
    strangers = [name for name, target in resolved.items() if target not in model_classes]
    if strangers:
        example = ",".join(f"{name}={model_classes[0]}" for name in strangers)
        raise DataError(
            f"data class(es) {', '.join(map(repr, strangers))} match no class of the model "
            f"{list(model_classes)}; map them, e.g. --class-map {example}"
        )
    targets = list(resolved.values())
    doubled = sorted({t for t in targets if targets.count(t) > 1})
    if doubled:
        raise DataError(f"two data classes map to {', '.join(map(repr, doubled))}; map each model class once")
    missing = [name for name in model_classes if name not in targets]
    if missing:
        raise DataError(
            f"the data has no images of the model's class(es) {', '.join(map(repr, missing))} "
            f"(data classes: {list(found)}); every class needs images for the metrics"
        )
    return resolved


def _class_folders(folder: Path, classes: Sequence[str]) -> list[str]:
    """The sub-folders to read: ``classes`` (each must exist), else every visible one."""
    if not folder.is_dir():
        raise DataError(f"{escape_path(folder)}: not a folder; pass a folder with one sub-folder per class")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [name for name in classes if name not in found]
    if missing:
        raise DataError(
            f"--classes {missing[0]!r}: no such sub-folder of {escape_path(folder)}; its sub-folders: "
            f"{', '.join(found) or 'none'}"
        )
    if not (classes or found):
        raise DataError(f"{escape_path(folder)} has no class sub-folders (one folder of images per class)")
    return list(dict.fromkeys(classes)) or found


def folder_set(
    info: ModelInfo,
    folder: Path,
    mapping: Mapping[str, str],
    on_bad_image: str,
    registry: Registry,
    classes: Sequence[str] = (),
) -> ExternalSet:
    """Class sub-folders of ``folder`` read by the model's reader. Sub-folders without any image file
    (metadata, split lists) are left out and listed in ``ignored``; ``classes`` names the sub-folders to
    read instead of all."""
    reader = file_reader(info, registry)
    reads = {
        name: reader.read([folder / name], on_bad_image=on_bad_image)
        for name in _class_folders(folder, classes)
    }
    ignored = tuple(name for name, read in reads.items() if len(read.images) == 0 and not read.skipped)
    reads = {name: read for name, read in reads.items() if name not in ignored}
    if not reads:
        raise DataError(
            f"{escape_path(folder)}: no sub-folder holds image files ({', '.join(ignored)}); pass a folder "
            "with one sub-folder of images per class"
        )
    resolved = _map_classes(list(reads), info.class_names, mapping)
    parts, files, skipped, counts, workers, groups, unit = [], {}, [], {}, 0, {}, "group"
    attributes: dict[str, dict[str, str]] = {}
    for name, read in reads.items():
        if len(read.images) == 0:
            raise DataError(f"{escape_path(folder / name)} holds no readable images")
        label = info.class_names.index(resolved[name])
        parts.append((read.images, label))
        files.update(read.files)
        skipped.extend(read.skipped)
        counts[resolved[name]] = len(read.images)
        workers = max(workers, read.num_workers)
        groups.update(read.groups)
        unit = read.group_unit if read.groups else unit
        for variable, values in read.attributes.items():
            attributes.setdefault(variable, {}).update(values)
    images = _Labelled(parts)
    found = ExternalSet(images, files, counts, skipped, workers, groups, unit, attributes)
    return replace(found, ignored=ignored)


def dataset_file_set(
    info: ModelInfo, path: Path, mapping: Mapping[str, str], registry: Registry, seed: int, logger: Any
) -> ExternalSet:
    """A TOML file whose ``[dataset]`` table names any dataset component (other sections are ignored)."""

    raw = read_recipe_file(path)
    if "dataset" not in raw:
        raise DataError(f"{path}: no [dataset] table; --data takes a folder or a TOML file with one")
    config = component_config(registry, Kind.DATASET, "dataset", raw["dataset"], path)
    context = BuildContext(seed=seed, device="cpu", recipe_dir=path.parent, logger=logger)
    if config.component.check is not None:
        config.component.check(config.options, context)
    data = config.component.factory(config.options, context)
    if not isinstance(data, DataSplits):
        raise DataError(f"{path}: dataset {config.component.name!r} returned no DataSplits")
    if len(data.train) or len(data.val):
        logger.warning(
            "%s splits its data: only its test split (%d images) is evaluated; let the dataset put "
            "everything in test (folder_split: test_only = true) to use all of it",
            path,
            len(data.test),
        )
    resolved = _map_classes(list(data.class_names), info.class_names, mapping)
    images = _Relabelled(data.test, [info.class_names.index(resolved[name]) for name in data.class_names])
    groups, attributes = dict(data.groups), {k: dict(v) for k, v in data.attributes.items()}
    beyond = bool(len(data.train) or len(data.val))
    return ExternalSet(
        images,
        dict(data.files),
        None,
        (),
        data.num_workers,
        groups,
        data.group_unit,
        attributes,
        files_beyond_test=beyond,
    )

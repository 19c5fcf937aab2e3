"""Evidence for the sequence-grouping threshold and the leakage level on the real SARS-CoV-2 CT sample.

Run: .venv/bin/python benchmarks/sequence_evidence.py [ROOT] [--smoke]
(ROOT defaults to ../shared/data/sarscov2-ct-sample next to the repository.)

The sample holds 120 of the 2,481 files, so most files have no scan neighbour in it. The script
compares the thumbnail correlation of consecutive (numbers 1 apart) and nearby (1-4 apart) files of one
class with that of unrelated files (same class, numbers more than 50 apart; or different classes),
shows where each file's most similar other file sits, counts what each candidate threshold would join,
groups the sample, and runs the leakage check on image-level and grouped splits of it.

``--smoke`` runs every step on a small generated sample named like the study's files (CT-like scan
sequences of the demo data, one exact copy per class) and 2 split seeds, so it needs no data and takes
seconds; its numbers are no evidence of anything.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from ctframe_folder_split.demo import _patient, _slice
from ctframe_folder_split.leakage import leakage_check
from ctframe_folder_split.sequence import DEFAULT_GROUP_THRESHOLD, group_sequences, thumbnail
from PIL import Image
from sklearn.model_selection import train_test_split

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sarscov2-ct-sample"
NUMBER = re.compile(r"\((\d+)\)")
NEARBY_MAX = 4
UNRELATED_MIN = 50
SPLIT_SEEDS = range(20)
SMOKE_SPLIT_SEEDS = range(2)


def generate_sample(root: Path) -> Path:
    """Per class 3 patients x 4 consecutive slices, patients 100 numbers apart, plus one exact copy."""
    rng = np.random.default_rng(0)
    for class_name, prefix, covid in (("COVID", "Covid", True), ("non-COVID", "Non-Covid", False)):
        folder = root / class_name
        folder.mkdir(parents=True)
        for patient_index in range(3):
            patient = _patient(rng, covid=covid)
            for index, z in enumerate(np.linspace(0.4, 0.6, 4)):
                number = 100 * patient_index + index + 1
                Image.fromarray(_slice(patient, float(z), 64, rng)).save(folder / f"{prefix} ({number}).png")
        (folder / f"{prefix} (999).png").write_bytes((folder / f"{prefix} (1).png").read_bytes())
    return root


def load(root: Path):
    names, classes, numbers, digests, vectors = [], [], [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"))
            names.append(f"{folder.name}/{path.name}")
            classes.append(folder.name)
            numbers.append(int(NUMBER.search(path.name).group(1)))
            digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
            vectors.append(thumbnail(rgb))
    return np.array(names), np.array(classes), np.array(numbers), np.array(digests), np.stack(vectors)


def describe(values: np.ndarray) -> str:
    if values.size == 0:
        return "(none)"
    q = np.quantile(values, [0.0, 0.5, 0.9, 0.99, 1.0])
    named = zip(("min", "median", "p90", "p99", "max"), q, strict=True)
    return f"n={values.size:5d}  " + "  ".join(f"{name} {value:6.3f}" for name, value in named)


def main(root: Path, split_seeds: range = SPLIT_SEEDS) -> None:
    if not root.is_dir():
        sys.exit(f"sample folder {root} not found")
    names, classes, numbers, digests, vectors = load(root)
    n = len(names)
    similarity = vectors @ vectors.T
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    same_class = classes[:, None] == classes[None, :]
    gap = np.abs(numbers[:, None] - numbers[None, :])
    copy = digests[:, None] == digests[None, :]

    consecutive = upper & same_class & (gap == 1) & ~copy
    nearby = upper & same_class & (gap <= NEARBY_MAX) & ~copy
    unrelated = upper & same_class & (gap > UNRELATED_MIN)
    side = int(np.sqrt(vectors.shape[1]))
    print(f"{n} images from {root}; thumbnails {side}x{side}")
    print(f"exact copies (same sha256): {int((upper & copy).sum())} pairs, similarity 1.000")
    print("pair similarity (Pearson correlation of thumbnails):")
    print(f"  same class, numbers 1 apart      : {describe(similarity[consecutive])}")
    print(f"  same class, numbers 1-{NEARBY_MAX} apart    : {describe(similarity[nearby])}")
    print(f"  same class, numbers >{UNRELATED_MIN} apart    : {describe(similarity[unrelated])}")
    print(f"  different classes                : {describe(similarity[upper & ~same_class])}")
    print("nearby pairs:")
    for i, j in zip(*np.nonzero(nearby), strict=True):
        print(f"  {names[i]:30s} {names[j]:30s} gap {gap[i, j]}  r {similarity[i, j]:6.3f}")

    others = np.where(copy | np.eye(n, dtype=bool), -np.inf, similarity)
    best = others.argmax(axis=1)
    has_nearby = (nearby | nearby.T).any(axis=1)
    best_is_nearby = has_nearby & same_class[np.arange(n), best] & (gap[np.arange(n), best] <= NEARBY_MAX)
    print("each file's most similar other file (its copy excluded):")
    print(f"  files with a nearby file in the sample: {int(has_nearby.sum())}, "
          f"of which the best match is nearby: {int(best_is_nearby.sum())}")
    print(f"  best-match r, files with a nearby file   : {describe(others.max(axis=1)[has_nearby])}")
    print(f"  best-match r, files without              : {describe(others.max(axis=1)[~has_nearby])}")

    print(f"candidate threshold: share of pairs at or above it (consecutive / nearby / unrelated, gap >"
          f" {UNRELATED_MIN})")
    for threshold in (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95):
        joined = similarity >= threshold
        print(
            f"  {threshold:.2f}:  {int(joined[consecutive].sum()):2d}/{int(consecutive.sum())}"
            f"   {int(joined[nearby].sum()):3d}/{int(nearby.sum())}"
            f"   {(similarity[unrelated] >= threshold).mean():6.1%} of {int(unrelated.sum())}"
        )

    groups = np.empty(n, dtype=object)
    for label in np.unique(classes):
        rows = np.flatnonzero(classes == label)
        for row, group in zip(rows, group_sequences(list(names[rows]), vectors[rows]), strict=True):
            groups[row] = f"{label}:{group}"
    # Exact copies join one group, as the dataset does for every grouping mode.
    for i, j in zip(*np.nonzero(upper & copy), strict=True):
        groups[groups == groups[j]] = groups[i]
    sizes = np.unique(groups, return_counts=True)[1]
    print(f"sequence groups at the default threshold {DEFAULT_GROUP_THRESHOLD}: {len(sizes)} groups for {n} "
          f"files, {int((sizes > 1).sum())} with more than one file (largest {sizes.max()})")

    print(f"leakage check (level 0.95; test vs train, 30% test; mean over {len(split_seeds)} seeds):")
    for title, unit in (("image-level, copies split freely", np.arange(n).astype(str)),
                        ("image-level, copies kept together", digests),
                        ("grouped by sequence", groups.astype(str))):
        shares, chances, medians, profiles, loud = [], [], [], [], 0
        for seed in split_seeds:
            is_test = split_units(unit, classes, seed)
            report = leakage_check(vectors[is_test], vectors[~is_test], names[is_test], names[~is_test],
                                   test_classes=classes[is_test], train_classes=classes[~is_test])
            shares.append(report.share_above)
            chances.append(report.chance_share)
            medians.append(report.median_nearest)
            profiles.append([(share, chance) for _, share, chance in report.profile])
            loud += report.loud
        print(f"  {title:36s} share above {np.mean(shares):5.1%}  chance {np.mean(chances):5.1%}  "
              f"median nearest {np.mean(medians):.3f}  loud in {loud}/{len(split_seeds)}")
        mean_profile = np.mean(profiles, axis=0)
        print("      share / chance at " + ", ".join(
            f"{level:.2f}: {share:.1%} / {chance:.1%}"
            for (level, _, _), (share, chance) in zip(report.profile, mean_profile, strict=True)
        ))


def split_units(unit: np.ndarray, classes: np.ndarray, seed: int) -> np.ndarray:
    """Stratified 30% test split of whole units (one class per unit)."""
    labels, first = np.unique(unit, return_index=True)
    _, test_units = train_test_split(labels, test_size=0.3, stratify=classes[first], random_state=seed)
    return np.isin(unit, test_units)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT, help="one folder per class")
    parser.add_argument("--smoke", action="store_true", help="generated sample, seconds: checks that it runs")
    arguments = parser.parse_args()
    if arguments.smoke:
        with tempfile.TemporaryDirectory(prefix="sequence-evidence-") as scratch:
            main(generate_sample(Path(scratch)), SMOKE_SPLIT_SEEDS)
    else:
        main(arguments.root)

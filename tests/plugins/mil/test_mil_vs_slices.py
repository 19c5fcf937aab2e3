"""MIL against slice training when only a few images of a positive patient carry the signal.

Each seed: 40 patients per class to train on (20 to validate on, 100 to test), 12 images of 16 px each;
a positive patient's blob is in one of its 12 images. (a) Slice training on the patient's label given
to every image (two_phase, phase 1 only), evaluated per patient with ``aggregate = "mean"``; (b) the
mil trainer with noisy-OR pooling, evaluated with the matching ``aggregate = "noisy_or"``. Same frozen
backbone, head, epochs and learning rate. MIL's patient-level ROC AUC must be at least 0.1 higher on
every seed (fp32 throughout).

Measured on 8 seeds (0..7), slice-mean vs MIL: 0.814/0.962, 0.806/0.967, 0.745/0.987, 0.797/0.966,
0.849/0.967, 0.758/0.983, 0.825/0.964, 0.778/0.963; the smallest margin 0.118. With the blob in 2 of
12 images the margin is 0.02-0.07 (slice-mean already 0.93-0.98), 0.07-0.11 at contrast 42 (docs/mil.md).
"""

from __future__ import annotations

import csv

import pytest
import torch
from ctframe_mil.run_files import TOP_IMAGES

from tests.plugins.mil.synthetic import make_splits, patient_auc, train_mil, train_slices

SEEDS = (0, 1, 2)
MARGIN = 0.1


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> dict[int, dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = {}
        for seed in SEEDS:
            folder = tmp_path_factory.mktemp(f"seed{seed}")
            data = make_splits(seed)
            slices = train_slices(data, seed, folder / "slices")
            mil = train_mil(data, seed, folder / "mil", pooling="noisy_or")
            with open(TOP_IMAGES.path(folder / "mil"), newline="") as handle:
                top = list(csv.DictReader(handle))
            results[seed] = {
                "slices": patient_auc(slices, data, "mean"),
                "mil": patient_auc(mil, data, "noisy_or"),
                "top": top,
                "signal": data.val.signal,
            }
        return results
    finally:
        torch.set_num_threads(threads)


def test_mil_beats_mean_aggregated_slice_training_on_every_seed(compared):
    table = {seed: (round(r["slices"], 3), round(r["mil"], 3)) for seed, r in compared.items()}
    print("patient-level ROC AUC per seed (slice mean, mil noisy_or):", table)
    short = {
        seed: pair
        for seed, pair in table.items()
        if compared[seed]["mil"] - compared[seed]["slices"] < MARGIN
    }
    assert not short, f"MIL is not {MARGIN} above slice training on seeds {short}"


def test_the_top_images_of_positive_patients_are_their_blobs(compared):
    for seed, result in compared.items():
        firsts = [row for row in result["top"] if row["rank"] == "1" and row["true_class"] == "positive"]
        assert len(firsts) == 20  # one row per positive validation patient
        found = sum(row["sample_id"] in result["signal"] for row in firsts)
        assert found >= 18, f"seed {seed}: the first image is the blob in only {found} of 20 patients"

"""A synthetic set where only a few images of a positive patient carry the signal, and the two arms the
MIL test compares on it (no tests in here; the tests import it).

Every image is noise around its own brightness; in a positive patient ``signal_images`` of its images
also hold a small bright blob at a random place. Negative patients have no blob anywhere. The patient's
label is all either arm learns from: slice training gives it to each of the patient's images, MIL to the
bag. Both arms use the same frozen backbone (a random 3x3 convolution, the same weights for every seed),
the same head and the same number of epochs over the same cached features.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from ctframe_dense_head.head import DenseHead, DenseHeadOptions
from ctframe_mil.options import MilOptions
from ctframe_mil.trainer import MilTrainer
from ctframe_two_phase.options import TwoPhaseOptions
from ctframe_two_phase.trainer import TwoPhaseTrainer
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import Dataset

from ctframe import BuildContext, DataSplits, Layer
from ctframe.evaluation.aggregate import Aggregation, group_predictions
from ctframe.runtime.model import Classifier
from ctframe.runtime.predict import predict_dataset
from ctframe.storage.rundir import RunDirectory

CLASSES = ("negative", "positive")
EPOCHS = 30
LR = 3e-3
"""Both arms' learning rate (RMSprop for two_phase, Adam for mil); 1e-3 gives the slice arm lower AUCs."""


class PatientImages(Dataset):
    """``patients`` per class, ``images`` each; ids ``<split>-p<patient>/<image>``, groups the patients;
    ``signal`` holds the ids of the images with a blob."""

    def __init__(
        self,
        split: str,
        patients: int,
        seed: int,
        images: int = 12,
        signal_images: int = 1,
        size: int = 16,
        contrast: float = 56.0,
    ):
        rng = np.random.default_rng(seed)
        count = 2 * patients * images
        pixels = rng.normal(0.0, 30.0, (count, 3, size, size)) + rng.normal(100.0, 12.0, (count, 1, 1, 1))
        self.labels: list[int] = []
        self.ids: list[str] = []
        self.groups: dict[str, str] = {}
        self.signal: set[str] = set()
        for patient in range(2 * patients):
            label, group = patient % 2, f"{split}-p{patient:03d}"
            chosen = set(rng.choice(images, signal_images, replace=False).tolist()) if label else set()
            for image in range(images):
                sample = f"{group}/{image:02d}"
                if image in chosen:
                    row, column = rng.integers(0, size - 4, 2)
                    pixels[patient * images + image, :, row : row + 4, column : column + 4] += contrast
                    self.signal.add(sample)
                self.labels.append(label)
                self.ids.append(sample)
                self.groups[sample] = group
        self.images = torch.from_numpy(np.clip(pixels, 0, 255).astype(np.uint8))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index], self.ids[index]


def make_splits(seed: int, patients: int = 40, test_patients: int = 100, **images) -> DataSplits:
    """``patients`` per class to train on, half as many to validate on, ``test_patients`` to test."""
    train = PatientImages("train", patients, seed, **images)
    val = PatientImages("val", patients // 2, seed + 1000, **images)
    test = PatientImages("test", test_patients, seed + 2000, **images)
    groups = {**train.groups, **val.groups, **test.groups}
    return DataSplits(CLASSES, "positive", train, val, test, groups=groups, group_unit="patient")


class RandomConv(nn.Module):
    """A 3x3 convolution with random weights and a ReLU: features in which a bright blob shows."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.out_features = channels

    @property
    def layers(self) -> list[Layer]:
        return [Layer("input"), Layer("conv", self.conv), Layer("relu")]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(images.float() / 127.5 - 1.0))


def make_model(seed: int) -> Classifier:
    torch.manual_seed(0)  # one backbone for every seed: the seeds vary the data and the head
    backbone = RandomConv()
    torch.manual_seed(seed)
    head = DenseHead(backbone.out_features, 2, DenseHeadOptions(pooling="max", units=64, l2=0.0, dropout=0.0))
    return Classifier(backbone, head, CLASSES)


def context(run_dir: Path, seed: int) -> BuildContext:
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("ctframe.test.mil")
    return BuildContext(
        seed=seed, device="cpu", recipe_dir=run_dir, run_dir=RunDirectory(run_dir), logger=logger
    )


def train_slices(data: DataSplits, seed: int, run_dir: Path) -> Classifier:
    """Slice training on inherited labels: two_phase's phase 1 alone (frozen backbone, feature cache)."""
    values = {
        "precision": "fp32",
        "initial": {"epochs": EPOCHS, "lr": LR, "patience": EPOCHS},
        "finetuned": {"epochs": 0},
        "batch_size": 32,
        "progress": False,
        "tensorboard": False,
    }
    return _fit(
        TwoPhaseTrainer(TwoPhaseOptions.model_validate(values), context(run_dir, seed)), data, seed, run_dir
    )


def train_mil(data: DataSplits, seed: int, run_dir: Path, **options) -> Classifier:
    values = {"precision": "fp32", "epochs": EPOCHS, "patience": EPOCHS, "lr": LR, **options}
    return _fit(MilTrainer(MilOptions.model_validate(values)), data, seed, run_dir)


def _fit(trainer, data: DataSplits, seed: int, run_dir: Path) -> Classifier:
    model = make_model(seed)
    (trained,) = trainer.fit(model, data.for_training(), context(run_dir, seed))
    model.load_state_dict(dict(trained.state_dict))
    return model


def patient_auc(model: Classifier, data: DataSplits, aggregate: str, k: int = 5) -> float:
    """Patient-level ROC AUC on the test split through the core's prediction loop and aggregation (fp32)."""
    predictions = predict_dataset(model, data.test, device="cpu", precision="fp32", batch_size=256)
    groups = np.array([data.groups[sample] for sample in predictions.sample_ids])
    grouped = group_predictions(predictions, groups, data.positive_index, Aggregation(aggregate, k=k))
    return float(roc_auc_score(grouped.predictions.labels, grouped.predictions.probabilities[:, 1]))

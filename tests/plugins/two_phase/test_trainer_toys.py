"""Tiny stand-ins for the real plugins, shared by the head / trainer / resume tests.

A backbone with a few named layers and BatchNorm, a deterministic two-class image set of 16x16
uint8 images, and helpers that wire them to the dense head and the two-phase trainer. (No tests
in here; the name only keeps the file with its owners' tests.)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from ctframe_dense_head.head import DenseHead, DenseHeadOptions
from ctframe_two_phase.options import TwoPhaseOptions
from ctframe_two_phase.trainer import TwoPhaseTrainer
from torch import nn
from torch.utils.data import Dataset

from ctframe import BuildContext, DataSplits, Layer, Predictions
from ctframe.runtime.model import Classifier
from ctframe.runtime.predict import predict_dataset
from ctframe.storage.rundir import RunDirectory

CLASSES = ("COVID", "non-COVID")


class ToyBackbone(nn.Module):
    """uint8 RGB -> [-1, 1] -> conv/BN/ReLU x2; seven named layers like a Keras layer list."""

    out_features = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, self.out_features, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(self.out_features)

    @property
    def layers(self) -> list[Layer]:
        return [
            Layer("input"),
            Layer("conv1", self.conv1),
            Layer("bn1", self.bn1),
            Layer("relu1"),
            Layer("conv2", self.conv2),
            Layer("bn2", self.bn2),
            Layer("relu2"),
        ]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1.0
        x = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(x)))


class ToyImages(Dataset):
    """Class 0: a bright blob on the left; class 1: on the right; plus seeded noise."""

    def __init__(self, count: int, seed: int, size: int = 16, delay_s: float = 0.0, prefix: str = "img"):
        generator = torch.Generator().manual_seed(seed)
        self.labels = [i % 2 for i in range(count)]
        noise = torch.randint(0, 90, (count, 3, size, size), generator=generator, dtype=torch.int16)
        images = noise.clone()
        half = size // 2
        for i, label in enumerate(self.labels):
            columns = slice(half, size) if label else slice(0, half)
            images[i, :, size // 4 : 3 * size // 4, columns] += 120
        self.images = images.clamp(0, 255).to(torch.uint8)
        self.ids = [f"{prefix}{i:03d}" for i in range(count)]
        self.delay_s = delay_s

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        if self.delay_s:
            time.sleep(self.delay_s)  # makes epochs long enough to be killed in the middle
        return self.images[index], self.labels[index], self.ids[index]


def random_flip(image: torch.Tensor) -> torch.Tensor:
    """A seeded-by-the-trainer augmentation: horizontal flip with probability 0.5 (global torch RNG)."""
    return image.flip(-1) if torch.rand(()) < 0.5 else image


def make_splits(
    augment=None, train: int = 32, val: int = 16, test: int = 16, delay_s: float = 0.0
) -> DataSplits:
    return DataSplits(
        class_names=CLASSES,
        positive_class="non-COVID",
        train=ToyImages(train, 1, delay_s=delay_s, prefix="train"),
        val=ToyImages(val, 2, prefix="val"),
        test=ToyImages(test, 3, prefix="test"),
        augment=augment,
    )


def make_model(seed: int = 0, units: int = 16, **head_options) -> Classifier:
    torch.manual_seed(seed)
    head = DenseHead(ToyBackbone.out_features, len(CLASSES), DenseHeadOptions(units=units, **head_options))
    return Classifier(ToyBackbone(), head, CLASSES)


def make_context(run_dir: Path, seed: int = 7, resume: bool = False, logger: logging.Logger | None = None):
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return BuildContext(
        seed=seed,
        device="cpu",
        recipe_dir=Path(run_dir),
        run_dir=RunDirectory(Path(run_dir)),
        resume=resume,
        logger=logger or logging.getLogger("ctframe.test"),
    )


def make_trainer(initial: dict | None = None, finetuned: dict | None = None, **options) -> TwoPhaseTrainer:
    """Trains in fp32 unless a test passes ``precision``: numeric expectations below mean fp32."""
    values = {
        "precision": "fp32",
        "initial": {"epochs": 3, "lr": 1e-2, **(initial or {})},
        "finetuned": {"epochs": 2, "lr": 1e-3, "unfreeze_last": 3, **(finetuned or {})},
        "batch_size": 8,
        "progress": False,
        "tensorboard": False,
        **options,
    }
    return TwoPhaseTrainer(TwoPhaseOptions.model_validate(values), make_context(Path(".")))


def fit(trainer: TwoPhaseTrainer, model: Classifier, data: DataSplits, context: BuildContext):
    """What the engine does: the trainer sees everything but the test split."""
    return trainer.fit(model, data.for_training(), context)


def predict(state_dict, dataset: Dataset, precision: str = "fp32", **model_options) -> Predictions:
    """Probabilities of trained weights on ``dataset`` through the core's prediction loop."""
    model = make_model(**model_options)
    model.load_state_dict(dict(state_dict))
    return predict_dataset(model, dataset, device="cpu", precision=precision, batch_size=16)


def run_resume_scenario(run_dir: Path, resume: bool, delay_s: float = 0.0):
    """The run the SIGKILL test kills and resumes: augmented training (RNG matters), both phases."""
    trainer = make_trainer(initial={"epochs": 4}, finetuned={"epochs": 3})
    data = make_splits(augment=random_flip, delay_s=delay_s)
    return fit(trainer, make_model(), data, make_context(run_dir, resume=resume))


# `python tests/plugins/two_phase/test_trainer_toys.py RUN_DIR resume|fresh` for the SIGKILL test
if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    run_resume_scenario(Path(sys.argv[1]), sys.argv[2] == "resume", delay_s=0.005)

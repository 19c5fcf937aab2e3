"""A throwaway third-party plugin: one tiny component of every kind that a recipe names.

Tests install it as a temporary distribution with an entry point, exactly as a user would install
a plugin package, to show that ctframe needs no change to use it. It trains for real (a few SGD
steps on 8x8 images whose brightness depends on the class).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pydantic import Field
from sklearn.metrics import accuracy_score
from torch import nn

from ctframe import DataError, DataSplits, Layer, Options, RecipePath, TrainedModel, hookimpl
from ctframe.api.training import classification_loss


class ToyDataOptions(Options):
    samples: int = Field(48, ge=8, le=10_000, description="images per split")
    size: int = Field(8, ge=4, le=64, description="image side in pixels")
    classes: list[str] = Field(["dark", "bright"], min_length=2, description="class names")
    positive_class: str = Field("bright", description="the positive class")
    require_file: RecipePath | None = Field(None, description="a file that must exist (exercises checks)")
    delay_s: float = Field(0.0, ge=0, le=1, description="sleep per image read (epochs long enough to kill)")
    sites: int = Field(
        0, ge=0, le=8, description="offer subgroups: 'site' with this many values, 'scanner' (0: none)"
    )


def check_data(options: ToyDataOptions, context) -> None:
    if options.require_file is not None and not options.require_file.is_file():
        raise DataError(f"{options.require_file} does not exist; create it or drop dataset.require_file")


class ToySplit(torch.utils.data.Dataset):
    def __init__(self, count: int, size: int, num_classes: int, seed: int, prefix: str, delay_s: float = 0.0):
        self.delay_s = delay_s
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(count) % num_classes
        base = (self.labels.float() * 10 + 100).view(-1, 1, 1, 1)  # overlapping classes
        noise = torch.randn(count, 3, size, size, generator=generator) * 40
        self.images = (base + noise).clamp(0, 255).to(torch.uint8)
        self.ids = [f"{prefix}/{i:04d}" for i in range(count)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.images[index], int(self.labels[index]), self.ids[index]


def build_data(options: ToyDataOptions, context) -> DataSplits:
    splits = {
        name: ToySplit(
            options.samples, options.size, len(options.classes), context.seed + offset, name, options.delay_s
        )
        for offset, name in enumerate(("train", "val", "test"))
    }
    files = {sid: f"{sid}.png" for split in splits.values() for sid in split.ids}
    attributes = {}
    if options.sites:  # pairs of consecutive images share a site, so each site holds both classes
        ids = [sid for split in splits.values() for sid in split.ids]
        attributes = {
            "site": {sid: f"site {int(sid.rsplit('/', 1)[1]) // 2 % options.sites}" for sid in ids},
            "scanner": dict.fromkeys(ids, "toy scanner"),
        }
    return DataSplits(
        tuple(options.classes),
        options.positive_class,
        splits["train"],
        splits["val"],
        splits["test"],
        files=files,
        summary={"generator": "toy"},
        attributes=attributes,
    )


class ToyBackboneOptions(Options):
    channels: int = Field(4, ge=1, le=64, description="feature channels")


class ToyBackbone(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.relu = nn.ReLU()  # a module, so that explainers can hook the last feature map
        self.out_features = channels

    @property
    def layers(self) -> list[Layer]:
        return [Layer("input"), Layer("conv", self.conv), Layer("relu")]

    @property
    def cam_layer(self) -> nn.Module:
        return self.relu

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(images.float() / 127.5 - 1))


class ToyHeadOptions(Options):
    pass


class ToyHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.num_outputs = 1 if num_classes == 2 else num_classes
        self.linear = nn.Linear(in_features, self.num_outputs)

    def penalty(self) -> torch.Tensor:
        return torch.zeros(())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.mean(dim=(2, 3)))


class ToyTrainerOptions(Options):
    epochs: int = Field(20, ge=1, le=1000, description="passes over the training split")
    lr: float = Field(0.05, gt=0, le=10, description="Adam learning rate")


class ToyTrainer:
    precision = None  # full-batch fp32 steps of its own, no autocast setting to record
    supports_distributed = False  # every process would train on everything

    def __init__(self, options: ToyTrainerOptions):
        self.options = options

    def fit(self, model, data, context) -> list[TrainedModel]:
        optimizer = torch.optim.Adam(model.parameters(), lr=self.options.lr)
        history = []
        for epoch in range(1, self.options.epochs + 1):
            model.train()
            loss = classification_loss(model(data.train.images), data.train.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append({"epoch": epoch, "train_loss": loss.item()})
            context.logger.info("toy epoch %d loss %.4f", epoch, loss.item())
        # The contract: weights and history only; the engine predicts validation and test itself.
        return [TrainedModel("toy", "Toy Model", model.state_dict(), history=history)]


class ToyAccuracyOptions(Options):
    pass


def toy_accuracy(inputs) -> dict[str, float]:
    positive = inputs.probabilities[:, inputs.positive_index] >= inputs.threshold
    predicted = np.where(positive, inputs.positive_index, 1 - inputs.positive_index)
    return {"toy_accuracy": float(accuracy_score(inputs.labels, predicted))}


@hookimpl
def ctframe_register_datasets(register):
    register("toy_data", build_data, ToyDataOptions, "Synthetic bright/dark squares", check=check_data)


@hookimpl
def ctframe_register_backbones(register):
    register(
        "toy_backbone",
        lambda options, context: ToyBackbone(options.channels),
        ToyBackboneOptions,
        "One 3x3 convolution",
    )


@hookimpl
def ctframe_register_heads(register):
    register(
        "toy_head",
        lambda options, context, in_features, num_classes: ToyHead(in_features, num_classes),
        ToyHeadOptions,
        "Average pooling and a linear layer",
    )


@hookimpl
def ctframe_register_trainers(register):
    register(
        "toy_trainer", lambda options, context: ToyTrainer(options), ToyTrainerOptions, "Full-batch Adam"
    )


@hookimpl
def ctframe_register_metrics(register):
    register(
        "toy_accuracy", lambda options, context: toy_accuracy, ToyAccuracyOptions, "Accuracy at the threshold"
    )

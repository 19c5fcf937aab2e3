"""Per-class weights of the training loss (``trainer.class_weights``)."""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils.data import Dataset

from ctframe import RecipeError, TrainingData


def train_labels(dataset: Dataset) -> list[int]:
    """The train split's labels: its ``labels`` attribute when it has one, else read item by item."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset[index][1] for index in range(len(dataset))]  # type: ignore[arg-type]
    return [int(label) for label in labels]


def class_weights(setting: str | dict[str, float], data: TrainingData) -> torch.Tensor | None:
    """One weight per class in label order, or ``None`` for ``"none"``. ``"balanced"``:
    ``n / (classes * n_c)`` over the train split, so a balanced split gets 1 everywhere."""
    names = data.class_names
    if setting == "none":
        return None
    if setting == "balanced":
        counts = Counter(train_labels(data.train))
        empty = [names[index] for index in range(len(names)) if not counts[index]]
        if empty:
            raise RecipeError(
                f"class_weights = 'balanced' needs every class in the train split; {', '.join(empty)} has "
                "no images there: give the weights as a table or add images"
            )
        total = sum(counts.values())
        return torch.tensor([total / (len(names) * counts[index]) for index in range(len(names))])
    assert isinstance(setting, dict)
    if set(setting) != set(names):
        raise RecipeError(
            f"trainer.class_weights names {sorted(setting)}; give one weight for each class: {list(names)}"
        )
    return torch.tensor([float(setting[name]) for name in names])

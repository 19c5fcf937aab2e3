"""PNG plots for the report, drawn with matplotlib's object API (no pyplot, no global backend)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ctframe.evaluation import calibration
from ctframe.report.artifacts import number

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class ScoredModel:
    """One model's test predictions as read back from its predictions CSV."""

    title: str
    truth: np.ndarray
    """True if the sample belongs to the positive class."""
    score: np.ndarray
    """Probability of the positive class."""
    confidence: np.ndarray
    """What the calibration plots (the ECE's definition) look at: the positive class's probability for
    two classes, the predicted class's probability for more."""
    outcome: np.ndarray


def new_figure(width: float = 6.4, height: float = 4.6, **margins: float) -> Figure:
    from matplotlib.figure import Figure

    # fixed margins: an automatic layout engine costs more than drawing the plot itself
    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(**{"left": 0.11, "right": 0.97, "bottom": 0.12, "top": 0.92, **margins})
    return figure


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def fold_training_curves(title: str, folds: Mapping[str, Sequence[dict[str, str]]]) -> bytes | None:
    """Validation loss and accuracy per epoch, one line per fold (epochs counted in order)."""
    usable = {fold: rows for fold, rows in folds.items() if rows}
    if not usable:
        return None
    figure = new_figure(10.0, 4.0, left=0.07, wspace=0.22, bottom=0.13)
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for fold, rows in usable.items():
        epochs = np.arange(1, len(rows) + 1)
        for axis, column in ((loss_axis, "val_loss"), (accuracy_axis, "val_accuracy")):
            values = np.array([number(row.get(column)) for row in rows])
            if np.isfinite(values).any():
                axis.plot(epochs, values, "-", marker="o", ms=3, label=f"fold {fold}")
    loss_axis.set(title=f"{title}: validation loss", xlabel="epoch (all phases in order)", ylabel="loss")
    accuracy_axis.set(title=f"{title}: validation accuracy", xlabel="epoch (all phases in order)")
    accuracy_axis.set_ylim(0, 1.02)
    from matplotlib.ticker import MaxNLocator

    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    return png_bytes(figure)


def training_curves(title: str, rows: Sequence[dict[str, str]]) -> bytes | None:
    """Loss and validation accuracy per epoch, one colour per phase."""
    if not rows or "epoch" not in rows[0]:
        return None
    epochs = np.array([number(row.get("epoch")) for row in rows])
    if not (np.all(np.isfinite(epochs)) and np.all(np.diff(epochs) > 0)):
        epochs = np.arange(1, len(rows) + 1, dtype=float)  # restarting counters: plot epochs in order
    phases = [row.get("phase") or "training" for row in rows]
    figure = new_figure(10.0, 4.0, left=0.07, wspace=0.22, bottom=0.13)
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    colours = iter(["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"] * 10)
    for phase in dict.fromkeys(phases):
        mask = np.array([p == phase for p in phases])
        colour = next(colours)
        for column, style, name in (("train_loss", "-", "train"), ("val_loss", "--", "val")):
            values = np.array([number(row.get(column)) for row in rows])[mask]
            if np.isfinite(values).any():
                loss_axis.plot(
                    epochs[mask], values, style, color=colour, marker="o", ms=3, label=f"{phase} {name}"
                )
        accuracy = np.array([number(row.get("val_accuracy")) for row in rows])[mask]
        if np.isfinite(accuracy).any():
            accuracy_axis.plot(epochs[mask], accuracy, "-", color=colour, marker="o", ms=3, label=phase)
    loss_axis.set(title=f"{title}: loss", xlabel="epoch", ylabel="loss")
    accuracy_axis.set(title=f"{title}: validation accuracy", xlabel="epoch", ylabel="accuracy")
    accuracy_axis.set_ylim(0, 1.02)  # the full scale: a flat 0.5 must look like chance, not like a trend
    from matplotlib.ticker import MaxNLocator

    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize="small")
    return png_bytes(figure)


def roc_curves(models: Sequence[ScoredModel], positive: str) -> bytes:
    from sklearn.metrics import roc_auc_score, roc_curve

    figure = new_figure()
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    for model in models:
        if model.truth.all() or not model.truth.any():
            continue
        false_positive_rate, true_positive_rate, _ = roc_curve(model.truth, model.score)
        auc = roc_auc_score(model.truth, model.score)
        axis.plot(false_positive_rate, true_positive_rate, label=f"{model.title} (AUC {auc:.3f})")
    axis.set(
        title=f"ROC curve, positive class {positive!r}",
        xlabel="false positive rate (1 - specificity)",
        ylabel="true positive rate (sensitivity)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")
    return png_bytes(figure)


def precision_recall_curves(models: Sequence[ScoredModel], positive: str) -> bytes:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    figure = new_figure()
    axis = figure.subplots()
    for model in models:
        if not model.truth.any():
            continue
        precision, recall, _ = precision_recall_curve(model.truth, model.score)
        average_precision = average_precision_score(model.truth, model.score)
        axis.step(recall, precision, where="post", label=f"{model.title} (AP {average_precision:.3f})")
    if models:
        prevalence = float(np.mean(models[0].truth))
        axis.axhline(prevalence, linestyle=":", color="grey", label=f"prevalence {prevalence:.2f}")
    axis.set(
        title=f"Precision-recall curve, positive class {positive!r}",
        xlabel="recall (sensitivity)",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize="small")
    return png_bytes(figure)


def confusion_matrix(
    title: str, true: Sequence[str], predicted: Sequence[str], class_names: Sequence[str]
) -> bytes:
    """Counts with the share of each true class (row percentages)."""
    index = {name: i for i, name in enumerate(class_names)}
    matrix = np.zeros((len(class_names), len(class_names)), dtype=int)
    for t, p in zip(true, predicted, strict=True):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 2.2 + 1.1 * len(class_names)
    figure = new_figure(size + 1.0, size, left=0.2, bottom=0.2, right=0.92)
    axis = figure.subplots()
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(class_names)):
        for column in range(len(class_names)):
            colour = "white" if shares[row, column] > 0.6 else "black"
            axis.text(
                column,
                row,
                f"{matrix[row, column]}\n{shares[row, column]:.0%}",
                ha="center",
                va="center",
                color=colour,
            )
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=30, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set(title=title, xlabel="predicted class", ylabel="true class")
    figure.colorbar(image, ax=axis, label="share of true class")
    return png_bytes(figure)


def reliability_diagram(models: Sequence[ScoredModel], bins: int, what: str) -> bytes:
    """Observed frequency against mean predicted probability per bin, and how many samples each bin has."""
    figure = new_figure(6.4, 6.0, hspace=0.08, top=0.94, bottom=0.09)
    curve_axis, count_axis = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    curve_axis.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    width = 1.0 / bins / max(len(models), 1)
    for position, model in enumerate(models):
        reliability = calibration.reliability_bins(model.confidence, model.outcome, bins)
        ece = calibration.expected_calibration_error(model.confidence, model.outcome, bins)
        filled = reliability.counts > 0
        curve_axis.plot(
            reliability.mean_predicted[filled],
            reliability.observed[filled],
            marker="o",
            label=f"{model.title} (ECE {ece:.3f})",
        )
        count_axis.bar(
            reliability.edges[:-1] + (position + 0.5) * width,
            reliability.counts,
            width=width,
            label=model.title,
        )
    curve_axis.set(
        title=f"Reliability diagram ({what})", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1)
    )
    curve_axis.grid(alpha=0.3)
    curve_axis.legend(loc="upper left", fontsize="small")
    count_axis.set(xlabel="predicted probability", ylabel="samples")
    count_axis.grid(alpha=0.3)
    return png_bytes(figure)

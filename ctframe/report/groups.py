"""The group view: for a few patients (or series, sequences) per outcome, the positive-class probability
of each image along the scan, and the images that drove the group's answer with their Grad-CAM overlays.

Groups, their aggregated probability and their outcome come from the final model's image predictions
(``predictions_<key>.csv``, its ``group`` column) and the aggregation and group threshold recorded in
``metrics.json`` (``group_level``), through the same :func:`ctframe.evaluation.aggregate.aggregate`
the evaluation used; so the strip agrees with the group-level metrics table by construction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np

from ctframe.evaluation.aggregate import Aggregation, aggregate, plural
from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.registry.plugins import Registry
from ctframe.report import html
from ctframe.report.artifacts import RunArtifacts, number
from ctframe.report.context import PlotWriter
from ctframe.report.gallery import CELLS, Cell, model_tools, overlay_function
from ctframe.report.plots import new_figure, png_bytes
from ctframe.report.tiles import overlay_thumbnails, read_image, thumbnail, tile

PER_CELL = 2
TOP_IMAGES = 3
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class Group:
    name: str
    rows: list[dict[str, str]]
    """The group's images in scan order (sample ids compared with their numbers as numbers)."""
    scores: np.ndarray
    """Positive-class probability per image, in that order."""
    probability: float
    """The aggregated positive-class probability."""
    truly_positive: bool
    predicted_positive: bool

    def top(self, count: int = TOP_IMAGES) -> list[int]:
        """Positions of the ``count`` images with the highest probability, highest first."""
        return [int(i) for i in np.argsort(-self.scores, kind="stable")[:count]]


def scan_order(sample_id: str) -> tuple[Any, ...]:
    """``case (9).png`` before ``case (10).png``; ``series/0002`` before ``series/0010``."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(sample_id))


def aggregation_of(record: dict[str, Any]) -> Aggregation:
    settings = record.get("aggregate") or {}
    return Aggregation(
        str(settings.get("method", "mean")),
        int(settings.get("k", Aggregation.k)),
        float(settings.get("quantile", Aggregation.quantile)),
    )


def build_groups(rows: Sequence[dict[str, str]], positive: str, record: dict[str, Any]) -> list[Group]:
    """Every group of the predictions, aggregated and decided as the evaluation did."""
    column = f"{PROBABILITY_PREFIX}{positive}"
    members: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row.get("group"):
            members.setdefault(row["group"], []).append(row)
    if not members:
        return []
    names = sorted(members)
    ordered = [sorted(members[name], key=lambda r: scan_order(r.get("sample_id") or "")) for name in names]
    scores = [np.array([number(r.get(column)) for r in group]) for group in ordered]
    flat = np.concatenate(scores)
    ids, probability, _ = aggregate(flat, np.repeat(names, [len(s) for s in scores]), aggregation_of(record))
    by_name = dict(zip(ids.tolist(), probability.tolist(), strict=True))
    threshold = (record.get("threshold") or {}).get("value")
    return [
        Group(
            name=name,
            rows=group,
            scores=score,
            probability=by_name[name],
            truly_positive=group[0].get("true_class") == positive,
            predicted_positive=(
                by_name[name] >= threshold
                if isinstance(threshold, int | float)
                else group[0].get("predicted_class") == positive  # more classes: argmax, as evaluated
            ),
        )
        for name, group, score in zip(names, ordered, scores, strict=True)
    ]


def pick(groups: Sequence[Group], cell: Cell, per_cell: int = PER_CELL) -> tuple[int, list[Group]]:
    """The groups of one outcome and the most confident ``per_cell`` of them (worst errors first)."""
    members = [
        g
        for g in groups
        if g.truly_positive == cell.true_positive and g.predicted_positive == cell.predicted_positive
    ]
    members.sort(key=lambda g: g.probability if cell.predicted_positive else -g.probability, reverse=True)
    return len(members), members[:per_cell]


def strips(shown: Sequence[tuple[Cell, Group]], positive: str, threshold: Any, unit: str) -> bytes:
    """One small panel per group: image probabilities along the scan, the aggregate, the threshold."""
    from matplotlib.ticker import MaxNLocator

    columns = min(4, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = new_figure(
        3.0 * columns, 2.3 * rows, left=0.06, right=0.99, bottom=0.2, top=0.88, wspace=0.25, hspace=0.6
    )
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axis, (cell, group) in zip(axes, shown, strict=False):
        x = np.arange(1, len(group.scores) + 1)
        axis.plot(x, group.scores, marker="o", markersize=3, linewidth=1, color="tab:blue")
        top = group.top()
        axis.scatter(x[top], group.scores[top], s=36, facecolors="none", edgecolors="tab:red", zorder=3)
        axis.axhline(group.probability, color="tab:green", linewidth=1.2, label=f"{unit} p")
        if isinstance(threshold, int | float):
            axis.axhline(threshold, color="grey", linestyle=":", linewidth=1, label="threshold")
        axis.set_ylim(-0.03, 1.03)
        axis.set_title(f"{cell.code} {group.name[:22]}", fontsize=8)
        axis.set_xlabel("image in scan order", fontsize=7)
        axis.tick_params(labelsize=7)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in axes[len(shown) :]:
        axis.set_visible(False)
    axes[0].set_ylabel(f"p({positive})", fontsize=8)
    axes[0].legend(fontsize=6, loc="upper left")
    return png_bytes(figure)


def _top_tiles(
    run: RunArtifacts, key: str, shown: Sequence[Group], registry: Registry
) -> tuple[list[str], list[str]]:
    """Per shown group, the tiles of its top images (thumbnail and overlay); notes when they cannot be had."""
    positive, names = str(run.positive_class), list(run.class_names or [])
    draw, note = overlay_function(registry)
    reader, loaded, notes = model_tools(run, key, registry, draw)
    chosen = [group.rows[i] for group in shown for i in group.top()]
    read = [read_image(reader, row) if reader else (None, "no model file") for row in chosen]
    images = [image for image, _ in read]
    overlays: list[bytes | None] = [None] * len(chosen)
    if draw is not None and loaded is not None:
        overlays, problem = overlay_thumbnails(draw, loaded.classifier, chosen, images, names)
        notes += [html.paragraph(problem, "missing")] if problem else []
    elif note:
        notes.append(html.paragraph(note, "muted"))
    tiles = [
        tile(row, positive, thumbnail(image) if image is not None else None, overlay, why or "")
        for row, (image, why), overlay in zip(chosen, read, overlays, strict=True)
    ]
    blocks, start = [], 0
    for group in shown:
        count = len(group.top())
        blocks.append(f'<div class="gallery">{"".join(tiles[start : start + count])}</div>')
        start += count
    return blocks, notes


def groups_view(run: RunArtifacts, plot: PlotWriter, registry: Registry) -> str:
    """The section's HTML; empty (section left out) when no model was evaluated per group."""
    models = (run.metrics or {}).get("models") or {}
    keys = [key for key, model in models.items() if isinstance(model, dict) and model.get("group_level")]
    if not keys or run.positive_class is None:
        return ""
    key = keys[-1]  # the final model: the strip is for reading one model's answers closely
    record = models[key]["group_level"]
    unit = str(record.get("unit", "group"))
    rows = run.predictions.get(key) or []
    groups = build_groups(rows, str(run.positive_class), record)
    if not groups:
        return html.missing(f"predictions_{key}.csv has no group column; the per-{unit} view needs it.")
    picked = {cell.code: pick(groups, cell) for cell in CELLS}
    shown = [(cell, group) for cell in CELLS for group in picked[cell.code][1]]
    threshold = (record.get("threshold") or {}).get("value")
    parts = [
        html.paragraph(
            f"{run.title(key)}, {len(groups)} test {plural(unit)} ({aggregation_of(record).describe()}); "
            f"up to {PER_CELL} per outcome, the most confident first. Each panel: p({run.positive_class}) of "
            f"every image in scan order, the {unit}'s probability (green) and the {unit} threshold "
            f"(dotted); red circles mark the {TOP_IMAGES} images shown below it."
        ),
        html.table(
            ["Outcome", plural(unit).capitalize(), "Shown"],
            [
                [f"{cell.title} ({cell.code})", picked[cell.code][0], len(picked[cell.code][1])]
                for cell in CELLS
            ],
        ),
    ]
    if not shown:
        return "\n".join(parts)
    parts.append(
        plot(f"groups_{key}", strips(shown, str(run.positive_class), threshold, unit), f"{unit} strips")
    )
    blocks, notes = _top_tiles(run, key, [group for _, group in shown], registry)
    parts += notes
    tiles = "".join(
        f"<h4>{cell.code}: {escape(unit)} {escape(group.name)}, {len(group.rows)} images, "
        f"p = {group.probability:.3f}</h4>{block}"
        for (cell, group), block in zip(shown, blocks, strict=True)
    )
    parts.append(f"<details><summary>The top images of each {escape(unit)} above</summary>{tiles}</details>")
    return "\n".join(parts)

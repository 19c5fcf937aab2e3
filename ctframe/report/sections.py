"""The report's sections, each built from the run's files alone; a missing input is named, not fatal."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from ctframe.evaluation.outputs import PROBABILITY_PREFIX
from ctframe.report import html, plots
from ctframe.report.artifacts import RunArtifacts, number
from ctframe.report.context import PlotWriter

SPLIT_NAMES = {"train": "Training", "val": "Validation", "test": "Test"}


def _precision(entry: Any) -> str | None:
    """``{"requested", "resolved", "reason"}`` of environment.json's ``precision`` as one phrase."""
    if not isinstance(entry, dict) or not entry.get("resolved"):
        return None
    text = str(entry["resolved"])
    details = [
        f"requested {entry['requested']}" if entry.get("requested") else "",
        str(entry.get("reason") or ""),
    ]
    details = [d for d in details if d]
    return text + (f" ({'; '.join(details)})" if details else "")


def overview(run: RunArtifacts) -> str:
    facts: list[list[Any]] = [["run directory", str(run.path)]]
    if run.status:
        facts.append(["status", run.status.get("state", "?")])
        if run.status.get("error"):
            facts.append(["error", run.status["error"]])
    if run.class_names:
        facts.append(["classes", ", ".join(run.class_names)])
    facts.append(
        ["positive class", run.positive_class or "unknown (metrics.json and split_summary.json missing)"]
    )
    facts.append(["models", ", ".join(f"{run.title(k)} ({k})" for k in run.model_keys) or "none found"])
    environment = run.environment or {}
    if environment.get("device"):
        facts.append(["device", environment["device"]])
    precision = environment.get("precision") if isinstance(environment.get("precision"), dict) else {}
    for use in ("training", "evaluation"):
        phrase = _precision(precision.get(use))
        if phrase:
            facts.append([f"{use} precision", phrase])
    if environment.get("torch_threads") is not None:
        facts.append(["torch threads", environment["torch_threads"]])
    parts = [html.table(["item", "value"], facts)]
    if run.problems:
        parts.append(html.table(["file", "problem"], [[name, why] for name, why in run.problems.items()]))
    return "\n".join(parts)


def _estimate(entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), int | float):
        return "n/a"
    text = f"{entry['value']:.3f}"
    if isinstance(entry.get("ci_low"), int | float) and isinstance(entry.get("ci_high"), int | float):
        text += f" ({entry['ci_low']:.3f}-{entry['ci_high']:.3f})"
    return text


def _signed(entry: Any) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), int | float):
        return "n/a"
    text = f"{entry['value']:+.3f}"
    if isinstance(entry.get("ci_low"), int | float) and isinstance(entry.get("ci_high"), int | float):
        text += f" ({entry['ci_low']:+.3f} to {entry['ci_high']:+.3f})"
    return text


def _threshold(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "?"
    if entry.get("value") is None:
        return "most probable class"
    where = f", chosen on {entry['chosen_on']}" if entry.get("chosen_on") else ""
    return f"{entry['value']:.3f} ({entry.get('method', '?')}{where})"


def metrics(run: RunArtifacts) -> str:
    if not run.metrics or not isinstance(run.metrics.get("models"), dict):
        return html.missing("metrics.json is missing: evaluation did not run or did not finish.")
    models: dict[str, Any] = run.metrics["models"]
    names: dict[str, str] = {}
    for model in models.values():
        for name, entry in (model.get("metrics") or {}).items():
            names.setdefault(name, entry.get("title", name) if isinstance(entry, dict) else name)
    columns = ["Model", *names.values(), "ECE", "Brier Score", "Threshold"]
    rows = []
    for model in models.values():
        values = model.get("metrics") or {}
        calibration = model.get("calibration") or {}
        rows.append(
            [
                model.get("title", model.get("key", "?")),
                *(_estimate(values.get(n)) for n in names),
                _estimate(calibration.get("ece")),
                _estimate(calibration.get("brier")),
                _threshold(model.get("threshold")),
            ]
        )
    bootstrap = run.metrics.get("bootstrap") or {}
    if bootstrap.get("resamples"):
        interval = (
            f"In brackets: {bootstrap.get('confidence', 0.95):.0%} confidence interval from a "
            f"{bootstrap.get('method', 'bootstrap')} with {bootstrap['resamples']} resamples "
            f"(seed {bootstrap.get('seed')})."
        )
    else:
        interval = "No confidence intervals (bootstrap disabled)."
    first = next(iter(models.values()), {})
    counts = first.get("test_class_counts") or {}
    size = (
        f" ({first.get('test_samples')} samples: {', '.join(f'{k} {v}' for k, v in counts.items())})"
        if counts
        else ""
    )
    parts = [
        html.paragraph(f"Test split{size}, positive class {run.positive_class!r}. {interval}"),
        html.table(columns, rows),
    ]
    differences = [d for d in run.metrics.get("paired_differences") or [] if isinstance(d, dict)]
    if differences:
        parts.append("<h3>Paired differences</h3>")
        parts.append(
            html.paragraph(
                "Each model minus the first, on the same test samples and the same bootstrap resamples; an "
                "interval that excludes 0 indicates a difference beyond resampling noise."
            )
        )
        names = list(dict.fromkeys(n for d in differences for n in (d.get("metrics") or {})))
        titles = [((differences[0].get("metrics") or {}).get(n) or {}).get("title", n) for n in names]
        rows = [
            [d.get("title", "?"), *(_signed((d.get("metrics") or {}).get(n)) for n in names)]
            for d in differences
        ]
        parts.append(html.table(["Comparison", *titles], rows))
    for model in models.values():
        for warning in model.get("warnings") or []:
            parts.append(html.paragraph(f"Warning ({model.get('title', '?')}): {warning}", "warning"))
    return "\n".join(parts)


def training(run: RunArtifacts, plot: PlotWriter) -> str:
    if not run.histories:
        return html.missing("No history_<model>.csv files: the trainer recorded no per-epoch history.")
    parts = []
    for key, rows in run.histories.items():
        png = plots.training_curves(run.title(key), rows)
        if png is None:
            parts.append(html.missing(f"history_{key}.csv has no rows or no 'epoch' column."))
            continue
        parts.append(
            plot(
                f"training_{key}",
                png,
                f"training curves of {run.title(key)}",
                f"{run.title(key)}: from history_{key}.csv, one colour per phase.",
            )
        )
        last = rows[-1]
        seconds = sum(number(row.get("seconds")) for row in rows if math.isfinite(number(row.get("seconds"))))
        parts.append(
            html.paragraph(
                f"{len(rows)} epochs; last epoch: train loss {number(last.get('train_loss')):.4f}, val loss "
                f"{number(last.get('val_loss')):.4f}, val accuracy {number(last.get('val_accuracy')):.4f}; "
                f"{seconds:.0f} s in total.",
                "muted",
            )
        )
    return "\n".join(parts)


def _probability_columns(row: dict) -> list[str]:
    return [c for c in row if c.startswith(PROBABILITY_PREFIX)]


def scored_models(run: RunArtifacts) -> list[plots.ScoredModel]:
    positive = run.positive_class
    models = []
    for key, rows in run.predictions.items():
        score_column = f"{PROBABILITY_PREFIX}{positive}"
        if not rows or positive is None or score_column not in rows[0] or "true_class" not in rows[0]:
            continue
        truth = np.array([row["true_class"] == positive for row in rows])
        score = np.array([number(row[score_column]) for row in rows])
        probability_columns = _probability_columns(rows[0])
        if len(probability_columns) > 2:  # more than two classes: calibration of the predicted class
            matrix = np.array([[number(row[c]) for c in probability_columns] for row in rows])
            names = [c.removeprefix(PROBABILITY_PREFIX) for c in probability_columns]
            confidence = matrix.max(axis=1)
            outcome = np.array(
                [names[i] == row["true_class"] for i, row in zip(matrix.argmax(axis=1), rows, strict=True)],
                dtype=float,
            )
        else:
            confidence, outcome = score, truth.astype(float)
        keep = np.isfinite(score) & np.isfinite(confidence)
        models.append(
            plots.ScoredModel(run.title(key), truth[keep], score[keep], confidence[keep], outcome[keep])
        )
    return models


def _predictions_missing(run: RunArtifacts) -> str | None:
    if not run.predictions:
        return "No predictions_<model>.csv files: evaluation did not run."
    if run.positive_class is None:
        return "The positive class is unknown: metrics.json and split_summary.json are both missing."
    return None


def curves(run: RunArtifacts, plot: PlotWriter) -> str:
    problem = _predictions_missing(run)
    if problem:
        return html.missing(problem)
    models = scored_models(run)
    positive = str(run.positive_class)
    return "\n".join(
        [
            plot(
                "roc",
                plots.roc_curves(models, positive),
                "ROC curves",
                "Test split; score = probability of the positive class; AUC in the legend.",
            ),
            plot(
                "precision_recall",
                plots.precision_recall_curves(models, positive),
                "precision-recall curves",
                "Test split; AP = average precision (area under the step curve); dotted: chance level.",
            ),
        ]
    )


def confusion(run: RunArtifacts, plot: PlotWriter) -> str:
    if not run.predictions:
        return html.missing("No predictions_<model>.csv files: evaluation did not run.")
    parts = []
    for key, rows in run.predictions.items():
        if not rows or "predicted_class" not in rows[0]:
            parts.append(html.missing(f"predictions_{key}.csv has no rows or no predicted_class column."))
            continue
        true = [row["true_class"] for row in rows]
        predicted = [row["predicted_class"] for row in rows]
        names = run.class_names or sorted(set(true) | set(predicted))
        threshold = _threshold(((run.metrics or {}).get("models", {}).get(key) or {}).get("threshold"))
        parts.append(
            plot(
                f"confusion_{key}",
                plots.confusion_matrix(run.title(key), true, predicted, names),
                f"confusion matrix of {run.title(key)}",
                f"{run.title(key)}, test split, threshold {threshold}: counts and share of each true class.",
            )
        )
    return "\n".join(parts)


def reliability(run: RunArtifacts, plot: PlotWriter) -> str:
    problem = _predictions_missing(run)
    if problem:
        return html.missing(problem)
    models = scored_models(run)
    several = any(len(_probability_columns((rows[:1] or [{}])[0])) > 2 for rows in run.predictions.values())
    what = "probability of the predicted class" if several else f"probability of {run.positive_class!r}"
    return plot(
        "reliability",
        plots.reliability_diagram(models, run.calibration_bins, what),
        "reliability diagram",
        f"Test split, {what}, {run.calibration_bins} equal-width bins; points on the diagonal are perfectly "
        "calibrated. ECE = sample-weighted mean gap between the points and the diagonal.",
    )


def folds(run: RunArtifacts) -> str:
    """``ctframe cv`` folders only: every fold's value of each metric, with mean and sd."""
    import json

    path = run.path / "folds.json"
    if not path.is_file():
        return ""
    summary = json.loads(path.read_text(encoding="utf-8"))
    parts = [
        html.paragraph(
            f"{summary['folds']} stratified, group-disjoint folds; every image was tested once. The tables "
            "above are the pooled out-of-fold predictions; below, each fold on its own "
            f"({', '.join(summary['runs'])}, each with its own report)."
        )
    ]
    for key, metrics in summary["per_fold"].items():
        columns = ["metric", *(f"fold {i}" for i in range(summary["folds"])), "mean", "sd"]
        rows = [
            [
                name,
                *(("n/a" if v is None else f"{v:.3f}") for v in entry["folds"]),
                f"{entry['mean']:.3f}",
                f"{entry['sd']:.3f}",
            ]
            for name, entry in metrics.items()
        ]
        parts.append(html.paragraph(run.title(key).removesuffix(" (out-of-fold)")))
        parts.append(html.table(columns, rows))
    return "\n".join(parts)


def external(run: RunArtifacts) -> str:
    """One table per external evaluation (``ctframe evaluate``), at each model's stored threshold."""
    from ctframe.workflows.external import EXTERNAL_DIR, external_results

    results = external_results(run.path)
    if not results:
        return html.paragraph(
            "No external evaluation yet: ctframe evaluate RUN --data FOLDER scores every model on another "
            "labelled data set at its stored threshold.",
            "muted",
        )
    parts = []
    for name, metrics in results.items():
        models = metrics.get("models", {})
        names = list(next(iter(models.values()), {}).get("metrics", {}))
        rows = [
            [model.get("title", key), model.get("test_samples", "?")]
            + [_estimate(model.get("metrics", {}).get(metric)) for metric in names]
            for key, model in models.items()
        ]
        parts.append(
            html.paragraph(
                f"{name}: all of it is test data; each model keeps its own threshold. Full report: "
                f"{EXTERNAL_DIR}/{name}/report.html"
            )
        )
        parts.append(html.table(["Model", "images", *names], rows))
    return "\n".join(parts)


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "n/a"


def _split_sizes(summary: dict[str, Any], counts: dict[str, dict[str, Any]]) -> dict[str, int]:
    sizes = summary.get("sizes")
    if isinstance(sizes, dict) and all(isinstance(v, int) for v in sizes.values()):
        return dict(sizes)
    return {
        split: sum(v for v in per_class.values() if isinstance(v, int)) for split, per_class in counts.items()
    }


def _group_count(groups: Any) -> int | None:
    """Groups over all splits, from ``{split: n}`` or ``{split: {class: n}}``."""
    if not isinstance(groups, dict) or not groups:
        return None
    total = 0
    for value in groups.values():
        if isinstance(value, dict):
            total += sum(v for v in value.values() if isinstance(v, int))
        elif isinstance(value, int):
            total += value
        else:
            return None
    return total


def _groups_in_several_splits(manifest: list[dict[str, str]] | None) -> int | None:
    """Groups of the manifest with files in more than one split; ``None`` when it records no groups."""
    if not manifest or "group" not in manifest[0]:
        return None
    splits: dict[str, set[str]] = {}
    for row in manifest:
        if row.get("group"):
            splits.setdefault(row["group"], set()).add(row.get("split", "?"))
    return sum(len(found) > 1 for found in splits.values())


def _duplicates_phrase(duplicates: Any) -> tuple[str, bool]:
    if not isinstance(duplicates, dict) or not isinstance(duplicates.get("sets"), int):
        return "", False
    sets = duplicates["sets"]
    if sets == 0:
        return " No two files have the same content.", False
    across = duplicates.get("across_classes") or 0
    text = f" {sets} set{'s' if sets != 1 else ''} of identical files ({duplicates.get('files', '?')} files)"
    text += f", {across} of them labelled with different classes." if across else "."
    return text, bool(across)


def split_verdict(run: RunArtifacts) -> tuple[str, bool]:
    """One sentence on how the data was split, and whether it warrants a warning."""
    summary = run.split_summary or {}
    counts = summary.get("counts") if isinstance(summary.get("counts"), dict) else {}
    sizes = _split_sizes(summary, counts)
    total = sum(sizes.values())
    shown = " / ".join(str(sizes[s]) for s in sizes)
    names = " / ".join(SPLIT_NAMES.get(s, s).lower() for s in sizes)
    shares = " / ".join(_share(sizes[s], total) for s in sizes)
    classes = len(run.class_names or []) or "?"
    text = f"{total} images of {classes} classes are split {shown} ({names}; {shares})"
    bad = False
    mode = summary.get("group_by") or (summary.get("grouping") or {}).get("mode")
    groups = _group_count(summary.get("groups"))
    spanning = _groups_in_several_splits(run.manifest)
    if mode and mode != "none":
        text += f", keeping each {mode} group in one split" + (f" ({groups} groups)" if groups else "")
        if spanning:
            text += (
                f"; yet {spanning} group{' has' if spanning == 1 else 's have'} files in more than one split"
            )
            bad = True
        elif spanning == 0:
            text += "; no group has files in two splits"
    else:
        text += (
            ", image by image: near-identical images of one patient can sit on both sides "
            "(see the leakage check)"
        )
    duplicates, across = _duplicates_phrase(summary.get("duplicates"))
    return text + "." + duplicates, bad or across


def _per_class_table(summary: dict[str, Any], class_names: list[str]) -> str | None:
    counts = summary.get("counts")
    if not isinstance(counts, dict) or not counts or not all(isinstance(v, dict) for v in counts.values()):
        return None
    groups = summary.get("groups") if isinstance(summary.get("groups"), dict) else {}
    splits = list(counts)
    classes = class_names or list(dict.fromkeys(c for per in counts.values() for c in per))

    def cell(split: str, name: str) -> str:
        count = counts[split].get(name, 0)
        per_group = groups.get(split)
        if isinstance(per_group, dict) and isinstance(per_group.get(name), int):
            return f"{count} ({per_group[name]} groups)"
        return str(count)

    rows = [
        [name, *(cell(s, name) for s in splits), sum(counts[s].get(name, 0) for s in splits)]
        for name in classes
    ]
    rows.append(
        [
            "all classes",
            *(sum(counts[s].values()) for s in splits),
            sum(sum(c.values()) for c in counts.values()),
        ]
    )
    columns = ["Class", *(SPLIT_NAMES.get(s, s) for s in splits), "Total"]
    return html.table(columns, rows)


SPLIT_KEYS_SHOWN = ("class_names", "positive_class", "sizes", "counts", "groups", "duplicates", "leakage")


def split(run: RunArtifacts) -> str:
    summary = run.split_summary
    parts = []
    if summary is None:
        parts.append(html.missing("split_summary.json is missing: the split was not recorded."))
    else:
        parts.append(html.verdict(*split_verdict(run)))
        table = _per_class_table(summary, list(run.class_names or []))
        if table:
            parts.append("<h3>Images per class and split</h3>")
            parts.append(table)
        grouping = summary.get("grouping") if isinstance(summary.get("grouping"), dict) else {}
        for line in grouping.get("lines") or []:
            parts.append(html.paragraph(str(line), "muted"))
        for warning in grouping.get("warnings") or []:
            parts.append(html.paragraph(f"Warning: {warning}", "warning"))
        duplicates = summary.get("duplicates") if isinstance(summary.get("duplicates"), dict) else {}
        examples = duplicates.get("examples") or duplicates.get("pairs") or []
        if examples:
            parts.append("<h3>Identical files (examples)</h3>")
            parts.append(html.structure(examples))
        rest = {k: v for k, v in summary.items() if k not in SPLIT_KEYS_SHOWN}
        if rest:
            parts.append(html.details("Everything else split_summary.json records", html.structure(rest)))
    if run.manifest:
        counts = Counter((row.get("split", "?"), row.get("class", "?")) for row in run.manifest)
        splits = list(dict.fromkeys(s for s, _ in counts))
        classes = list(dict.fromkeys(c for _, c in counts))
        rows = [
            [SPLIT_NAMES.get(s, s), *(counts[(s, c)] for c in classes), sum(counts[(s, c)] for c in classes)]
            for s in splits
        ]
        table = html.table(["Split", *classes, "Total"], rows)
        recorded = (summary or {}).get("counts")
        if isinstance(recorded, dict) and all(isinstance(v, dict) for v in recorded.values()):
            # The per-class table above already says it; the manifest only confirms it file by file.
            same = {(s, c): n for s, per in recorded.items() for c, n in per.items() if n} == dict(counts)
            parts.append(
                html.paragraph(
                    f"split_manifest.csv lists the same {len(run.manifest)} files, one row each.", "muted"
                )
                if same
                else html.paragraph("split_manifest.csv disagrees with the counts above:", "warning") + table
            )
            if same:
                parts.append(html.details("Files per split and class (split_manifest.csv)", table))
        else:
            parts.append("<h3>Files per split and class (split_manifest.csv)</h3>")
            parts.append(table)
    elif summary is not None:
        parts.append(
            html.paragraph("split_manifest.csv is missing: no per-file record of the split.", "muted")
        )
    return "\n".join(parts)


LEAKAGE_KEYS = ("level", "n_test", "count_above", "share_above", "loud")


def _percent(value: Any) -> str:
    return (
        f"{value:.1%}" if isinstance(value, int | float) and not isinstance(value, bool) else "not estimated"
    )


def leakage_verdict(report: dict[str, Any]) -> str:
    count, total, level = report["count_above"], report["n_test"], report["level"]
    found = f"{count} of {total} test images ({_percent(report['share_above'])})"
    chance = _percent(report.get("chance_share"))
    if report["loud"]:
        return (
            f"Likely leakage: {found} have a training image at similarity {level:.2f} or more, against "
            f"{chance} expected by chance; test scores are probably optimistic."
        )
    return (
        f"No sign of leakage at similarity {level:.2f}: {found} have a training image that close, against "
        f"{chance} expected by chance."
    )


def leakage(run: RunArtifacts) -> str:
    report = run.leakage
    if report is None:
        return html.paragraph(
            "No leakage check was recorded: the dataset component wrote no leakage.json and no 'leakage' "
            "entry in split_summary.json.",
            "muted",
        )
    if not all(key in report for key in LEAKAGE_KEYS):
        return html.paragraph(
            "The leakage record has a form this report does not know:", "muted"
        ) + html.structure(report)
    level = report["level"]
    tolerance = report.get("tolerance")
    chance = report.get("chance_share")
    parts = [html.verdict(leakage_verdict(report), bad=bool(report["loud"]))]
    parts.append(
        html.paragraph(
            "For every test image the check finds its most similar training or validation image "
            "(correlation of small thumbnails). It fires when the share at or above the level exceeds "
            f"chance by more than {_percent(tolerance)}; chance is the same search against images of "
            "other classes."
        )
    )
    facts = [
        ["Similarity level", f"{level:.2f}"],
        ["Test images checked", report["n_test"]],
        [
            "Test images with a training image at the level or above",
            f"{report['count_above']} ({_percent(report['share_above'])})",
        ],
        ["Expected by chance (other classes)", _percent(chance)],
    ]
    if isinstance(report.get("median_nearest"), int | float):
        facts.append(["Median similarity to the closest training image", f"{report['median_nearest']:.3f}"])
    facts.append(["Verdict", "leakage" if report["loud"] else "quiet"])
    parts.append(html.table(["Measure", "Value"], facts))
    profile = [p for p in report.get("profile") or [] if isinstance(p, dict) and "level" in p]
    if profile:
        rows = []
        for point in profile:
            share, by_chance = point.get("share_above"), point.get("chance_share")
            excess = (
                share - by_chance
                if isinstance(share, int | float) and isinstance(by_chance, int | float)
                else None
            )
            rows.append(
                [
                    f"{point['level']:.2f}",
                    _percent(share),
                    _percent(by_chance),
                    f"{excess:+.1%}" if excess is not None else "n/a",
                ]
            )
        parts.append("<h3>At other similarity levels</h3>")
        parts.append(
            html.table(
                [
                    "Similarity at least",
                    "Test images with a training image that close",
                    "Expected by chance",
                    "Excess",
                ],
                rows,
            )
        )
    pairs = [p for p in report.get("worst_pairs") or [] if isinstance(p, dict)]
    if pairs:
        parts.append("<h3>Closest test and training images</h3>")
        rows = [[p.get("test", "?"), p.get("train", "?"), p.get("similarity")] for p in pairs]
        parts.append(html.table(["Test image", "Closest training image", "Similarity"], rows))
    grouped = (run.split_summary or {}).get("group_by") not in (None, "none")
    if grouped and not report["loud"]:
        parts.append(
            html.paragraph(
                "A grouped split keeps near-copies together by construction, so quiet at the check's own "
                "level says little: compare the lower levels above with chance, and prefer external or "
                "grouped evaluation for the final word.",
                "muted",
            )
        )
    return "\n".join(parts)


def recipe(run: RunArtifacts) -> str:
    if run.recipe is None:
        return html.missing("recipe.toml is missing.")
    return html.paragraph("The recipe as resolved for this run (defaults filled in):") + html.preformatted(
        run.recipe
    )


def environment(run: RunArtifacts) -> str:
    if run.environment is None:
        return html.missing("environment.json is missing.")
    return html.structure(run.environment)


def log(run: RunArtifacts) -> str:
    if run.log_tail is None:
        return html.missing("run.log is missing.")
    return html.paragraph(f"Last {len(run.log_tail)} lines of run.log:", "muted") + html.preformatted(
        "\n".join(run.log_tail)
    )

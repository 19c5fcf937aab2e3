"""Issue 26, items 3, 6 and 7: plugin name clashes, the last steps of a run, and what ``cv`` resumes from.

- Clashes: a built-in keeps its name and the other plugin's component is reachable as ``plugin:name``,
  with a warning naming both; two third-party plugins clashing refuse only the bare name.
- ``completed`` is written after the report: a kill at any step after training resumes to a complete
  run whose files equal an uninterrupted one's.
- ``cv`` stores its recipe text and fold plan, sealed, and refuses a resume when either changed; a fold
  plan the data cannot satisfy fails before anything is created.

Every case checks the exit code, the one ``error:`` line naming the culprit (or the warning line), no
traceback, and that a refused command left every file as it was.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ctframe.registry.plugins import PLUGINS_ENV
from tests.conftest import install_distribution
from tests.core.hostile_support import install_toy, invoke, refused, tree
from tests.toy.recipe import toy_recipe_text

# ------------------------------------------------------------------------------- fake plugins

CLASH_A = """
from pathlib import Path

from ctframe import Options, hookimpl


def _metric(options, context):
    return lambda inputs: {"clash_a_value": 0.25}


@hookimpl
def ctframe_register_metrics(register):
    register("accuracy", _metric, Options, "clash_a's own accuracy")
    register("shared_runs_metric", _metric, Options, "clash_a's shared metric")


def _write_note(folder, count=None, size=None, seed=0):
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "note.txt").write_text("clash_a")
    return "one note from clash_a"


@hookimpl
def ctframe_demo_data(register):
    register("png", _write_note, "clash_a's png, which is only a note")
"""

CLASH_B = """
from ctframe import Options, hookimpl


@hookimpl
def ctframe_register_metrics(register):
    register("shared_runs_metric", lambda options, context: (lambda inputs: {}), Options, "clash_b's")
"""

FOLD_TOY = '''
"""Toy images split into cross-validation folds by the core's rule (``ctframe.api.data.assign_fold``)."""

import hashlib

import torch
from pydantic import Field

from ctframe import DataError, DataSplits, Options, hookimpl
from ctframe.api.data import Item, assign_fold

CLASSES = ("dark", "bright")


class FoldToyOptions(Options):
    samples: int = Field(24, ge=8, le=1000, description="images in all")


class Split(torch.utils.data.Dataset):
    def __init__(self, images, labels, ids):
        self.images, self.labels, self.ids = images, labels, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index]), self.ids[index]


def build(options, context):
    if context.fold is None:
        raise DataError("fold_toy_data makes cross-validation folds only; use ctframe cv")
    generator = torch.Generator().manual_seed(context.seed)
    labels = torch.arange(options.samples) % 2
    noise = torch.randn(options.samples, 3, 8, 8, generator=generator) * 40
    images = ((labels.float() * 10 + 100).view(-1, 1, 1, 1) + noise).clamp(0, 255).to(torch.uint8)
    ids = [f"img{index:03d}" for index in range(options.samples)]
    items = [
        Item(ids[i], hashlib.sha256(images[i].numpy().tobytes()).hexdigest(), int(labels[i]))
        for i in range(options.samples)
    ]
    fold, folds = context.fold
    splits, _ = assign_fold(items, CLASSES, fold, folds, 0.25, context.seed)

    def split(name):
        chosen = [i for i, s in enumerate(splits) if s == name]
        return Split(images[chosen], labels[chosen], [ids[i] for i in chosen])

    return DataSplits(
        CLASSES, "bright", split("train"), split("val"), split("test"),
        files={sample: f"{sample}.png" for sample in ids}, summary={"fold": [fold, folds]},
    )


@hookimpl
def ctframe_register_datasets(register):
    register("fold_toy_data", build, FoldToyOptions, "toy images in cross-validation folds")
'''

FAKES = (  # module names of their own: tests run under xdist and share sys.modules per worker
    ("clash_runs_a_ctframe", "clash_a", CLASH_A),
    ("clash_runs_b_ctframe", "clash_b", CLASH_B),
    ("fold_runs_ctframe", "fold_toy", FOLD_TOY),
)
BUILT_IN_CLASH = "toy,classification_metrics,clash_a"
THIRD_PARTY_CLASH = "toy,clash_a,clash_b"
FOLDS = "toy,fold_toy"
WARNING = (
    "warning: metric 'accuracy' is registered by built-in plugin 'classification_metrics' and by plugin "
    "'clash_a'; the built-in keeps the name, name plugin 'clash_a''s as 'clash_a:accuracy'"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The toy plugin and the fakes installed as third-party distributions, on sys.path."""
    root = tmp_path_factory.mktemp("hardening-runs-site")
    install_toy(root / "site")
    for module, entry_point, source in FAKES:
        path = root / "src" / f"{module}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(source)
        install_distribution(root / "site", path, module, entry_point)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root / "site"))
        yield patch
    for module in ("toy_ctframe", *(module for module, _, _ in FAKES)):
        sys.modules.pop(module, None)


def _use(patch: pytest.MonkeyPatch, selection: str) -> None:
    from ctframe.registry.plugins import clear_registry_cache

    patch.setenv(PLUGINS_ENV, selection)
    clear_registry_cache()


def _recipe(folder: Path, name: str = "toy.toml", **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(toy_recipe_text({"evaluation": {"bootstrap": 0}, "trainer": {"epochs": 3}}, **changes))
    return path


def _only(parent: Path) -> Path:
    (found,) = [path for path in parent.iterdir() if path.is_dir()]
    return found


def _state(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _clean(code: int, out: str, err: str, warning: str = "") -> None:
    """An accepted command: exit 0, no traceback, no error line, and the warning when one is due."""
    assert code == 0, out + err
    assert "Traceback" not in out + err and "error:" not in err, err
    if warning:
        assert err.count(warning) == 1, err  # once per command, not once per lookup
    else:
        assert "warning:" not in err, err


# --------------------------------------------------------------------------- (A) name clashes


@dataclass(frozen=True)
class ClashCase:
    selection: str
    metrics: list[str]
    code: int = 0
    culprit: tuple[str, ...] = ()
    """Parts of the one error line (refused cases)."""
    warning: str = ""


CLASH_CASES = {
    "a built-in keeps its name": ClashCase(BUILT_IN_CLASH, ["accuracy"], warning=WARNING),
    "the other plugin's, qualified": ClashCase(BUILT_IN_CLASH, ["clash_a:accuracy"], warning=WARNING),
    "the built-in, qualified": ClashCase(
        BUILT_IN_CLASH, ["classification_metrics:accuracy"], warning=WARNING
    ),
    "a recipe that names neither": ClashCase(THIRD_PARTY_CLASH, ["toy_accuracy"]),
    "one of two third-party, qualified": ClashCase(THIRD_PARTY_CLASH, ["clash_b:shared_runs_metric"]),
    "two third-party, bare": ClashCase(
        THIRD_PARTY_CLASH,
        ["shared_runs_metric"],
        2,
        ("'clash_a' and 'clash_b'", "'clash_a:shared_runs_metric' or 'clash_b:shared_runs_metric'"),
    ),
    "an unknown plugin qualifier": ClashCase(
        THIRD_PARTY_CLASH, ["nobody:accuracy"], 2, ("unknown metric component 'nobody:accuracy'",)
    ),
    "one metric, bare and qualified": ClashCase(
        "toy,classification_metrics", ["accuracy", "classification_metrics:accuracy"], 2, ("listed twice",)
    ),
}


@pytest.mark.parametrize("case", CLASH_CASES.values(), ids=CLASH_CASES.keys())
def test_a_name_clash_refuses_only_the_bare_name_of_third_party_plugins(case: ClashCase, site, tmp_path):
    _use(site, case.selection)
    recipe = _recipe(tmp_path / "recipes", metrics=case.metrics)
    before = tree(tmp_path)
    code, out, err = invoke(["validate", "--quick", str(recipe)])
    if case.code:
        refused(code, out, err, case.culprit, case.code)
    else:
        _clean(code, out, err, case.warning)
    assert tree(tmp_path) == before


def test_list_plugins_keeps_the_built_in_and_shows_the_clash(site):
    _use(site, BUILT_IN_CLASH)
    code, out, err = invoke(["list-plugins", "--json"])
    _clean(code, out, err, WARNING)
    listing = json.loads(out)
    owners = {entry["component"]: entry["plugin"] for entry in listing["components"]}
    assert owners["accuracy"] == "classification_metrics" and owners["clash_a:accuracy"] == "clash_a"
    assert listing["broken"] == [] and [f"warning: {w}" for w in listing["warnings"]] == [WARNING]


def test_a_run_records_the_qualified_name_and_logs_the_clash(site, tmp_path):
    _use(site, BUILT_IN_CLASH)
    recipe = _recipe(tmp_path / "recipes", metrics=["clash_a:accuracy"])
    code, out, err = invoke(["run", str(recipe), "-o", str(tmp_path / "runs")])
    assert code == 0 and err.count(WARNING) == 1, err
    run = _only(tmp_path / "runs")
    (metric,) = tomllib.loads((run / "recipe.toml").read_text())["metrics"]
    assert metric["component"] == "clash_a:accuracy"  # so a resume or a model file finds the same one
    metrics = json.loads((run / "metrics.json").read_text())["models"]["toy"]["metrics"]
    assert metrics["clash_a_value"]["value"] == 0.25  # the plugin's metric, not the built-in's
    assert WARNING.removeprefix("warning: ") in (run / "run.log").read_text()


def test_a_built_in_demo_format_stays_and_the_other_is_qualified(site, tmp_path):
    _use(site, "folder_split,clash_a")
    code, out, err = invoke(["demo-data", str(tmp_path / "note"), "--format", "clash_a:png"])
    _clean(code, out, err)
    assert "one note from clash_a" in out and (tmp_path / "note" / "note.txt").is_file()
    code, out, err = invoke(
        ["demo-data", str(tmp_path / "png"), "--format", "png", "--count", "3", "--size", "16"]
    )
    _clean(code, out, err)
    assert not (tmp_path / "png" / "note.txt").exists() and any((tmp_path / "png").rglob("*.png"))


# ------------------------------------------------------------------ (B) completed is written last


def _raise(error: type[BaseException]) -> Callable[..., None]:
    def fail(*args, **kwargs):
        raise error()

    return fail


def _in_report(error: type[BaseException]) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda patch: patch.setattr("ctframe.workflows.engine.render", _raise(error))


def _after_evaluation(patch: pytest.MonkeyPatch) -> None:
    from ctframe.workflows import engine

    real = engine.predict_and_evaluate

    def evaluate_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise SystemExit(9)  # as if killed before the status says so

    patch.setattr(engine, "predict_and_evaluate", evaluate_then_die)


def _before_completed(patch: pytest.MonkeyPatch) -> None:
    from ctframe.storage.rundir import RunDirectory

    real = RunDirectory.write_json

    def write_json(self, entry, data, *args, **kwargs):
        if isinstance(data, dict) and data.get("state") == "completed":
            raise SystemExit(9)  # the report is written; the kill comes just before `completed`
        return real(self, entry, data, *args, **kwargs)

    patch.setattr(RunDirectory, "write_json", write_json)


@dataclass(frozen=True)
class KillCase:
    kill: Callable[[pytest.MonkeyPatch], None]
    code: int | None
    """The interrupted command's exit code; ``None`` when it dies (SystemExit, as a SIGKILL would)."""
    state: str
    report: bool
    """Whether report.html exists after the kill."""
    evaluated: bool = True


KILL_CASES = {
    "killed during the evaluation's last step": KillCase(_after_evaluation, None, "running", False, False),
    "Ctrl-C while drawing the report": KillCase(_in_report(KeyboardInterrupt), 130, "interrupted", False),
    "killed while drawing the report": KillCase(_in_report(SystemExit), None, "evaluated", False),
    "a bug in the report": KillCase(_in_report(RuntimeError), 1, "failed", False),
    "killed between the report and completed": KillCase(_before_completed, None, "evaluated", True),
}
DETERMINISTIC = ("metrics.json", "predictions_toy.csv", "split_summary.json", "models/toy.safetensors")


@pytest.fixture(scope="module")
def reference_run(site, tmp_path_factory) -> Path:
    _use(site, "toy")
    folder = tmp_path_factory.mktemp("reference-run")
    recipe = _recipe(folder / "recipes")
    assert invoke(["run", str(recipe), "-o", str(folder / "runs")])[0] == 0
    return _only(folder / "runs")


@pytest.mark.parametrize("case", KILL_CASES.values(), ids=KILL_CASES.keys())
def test_a_kill_after_training_resumes_to_a_complete_run(case: KillCase, site, reference_run, tmp_path):
    _use(site, "toy")
    recipe = _recipe(tmp_path / "recipes")
    with pytest.MonkeyPatch.context() as patch:
        case.kill(patch)
        try:
            code, out, err = invoke(["run", str(recipe), "-o", str(tmp_path / "runs")])
        except SystemExit:
            code, out, err = None, "", ""
    assert code == case.code and "Traceback" not in out + err, err
    run = _only(tmp_path / "runs")
    state = _state(run)
    assert (
        state["state"] == case.state and state.get("evaluated", case.state == "evaluated") is case.evaluated
    )
    assert (run / "report.html").exists() is case.report
    evaluated = {name: (run / name).read_bytes() for name in DETERMINISTIC if case.evaluated}

    code, out, err = invoke(["run", "--resume", str(run)])
    assert code == 0 and "Traceback" not in out + err and "error:" not in err, err
    assert _state(run)["state"] == "completed"
    assert "ctframe run report (completed)" in (run / "report.html").read_text()
    for name in DETERMINISTIC:
        assert (run / name).read_bytes() == (reference_run / name).read_bytes(), name
        assert evaluated.get(name, (run / name).read_bytes()) == (run / name).read_bytes(), name  # not redone


def test_a_completed_run_still_refuses_resume(site, reference_run, tmp_path):
    _use(site, "toy")
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    before = tree(tmp_path)
    refused(*invoke(["run", "--resume", str(run)]), ["this run already completed"])
    assert tree(tmp_path) == before


# ------------------------------------------------------------------------- (C) what cv resumes


def _cv_recipe(folder: Path, epochs: int = 3) -> Path:
    return _recipe(
        folder,
        "cvtoy.toml",
        dataset={"component": "fold_toy_data", "samples": 24},
        trainer={"epochs": epochs},
    )


@pytest.fixture(scope="module")
def interrupted_cv(site, tmp_path_factory) -> Path:
    """A 2-fold cross-validation interrupted as fold-1 starts: fold-0 completed, cv.json written."""
    from ctframe.workflows import crossval

    _use(site, FOLDS)
    folder = tmp_path_factory.mktemp("interrupted-cv")
    recipe = _cv_recipe(folder / "recipes")
    real = crossval.start_run

    def start_run(recipe, *args, run_path=None, **kwargs):
        if Path(run_path).name == "fold-1":
            raise KeyboardInterrupt
        return real(recipe, *args, run_path=run_path, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(crossval, "start_run", start_run)
        code, _, err = invoke(["cv", str(recipe), "--folds", "2", "-o", str(folder / "cv")])
    assert code == 130, err
    root = _only(folder / "cv")
    assert _state(root / "fold-0")["state"] == "completed" and not (root / "fold-1").exists()
    return root


def _plan_edit(**changes) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        plan = json.loads((root / "cv.json").read_text())
        plan.update(changes)
        (root / "cv.json").write_text(json.dumps(plan))

    return edit


def _write(relative: str, text: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).write_text(text)


def _edit_fold_recipe(root: Path) -> None:
    recipe = root / "fold-0" / "recipe.toml"
    recipe.write_text(recipe.read_text().replace("epochs = 3", "epochs = 4"))


@dataclass(frozen=True)
class ResumeCase:
    edit: Callable[[Path], None]
    culprit: tuple[str, ...]
    extra: dict[str, str] = field(default_factory=dict)


RESUME_CASES = {
    "folds edited from 2 to 3": ResumeCase(_plan_edit(folds=3), ("cv.json differs from the plan",)),
    "folds not a number": ResumeCase(
        _plan_edit(folds="two"), ("cv.json: folds: expected a whole number", "'two'")
    ),
    "the stored recipe edited": ResumeCase(
        _plan_edit(recipe_text="metrics = []\n"), ("cv.json differs from the plan", "sha256")
    ),
    "overrides not a list": ResumeCase(_plan_edit(overrides="trainer.epochs=9"), ("cv.json: overrides:",)),
    "a field cv does not know": ResumeCase(_plan_edit(extra=1), ("cv.json: extra: not a field",)),
    "cv.json not JSON": ResumeCase(_write("cv.json", "{folds: 2"), ("cv.json: unreadable",)),
    "cv.json a list": ResumeCase(_write("cv.json", "[2]"), ("cv.json: expected a JSON object",)),
    "cv.json gone": ResumeCase(lambda root: (root / "cv.json").unlink(), ("not a cross-validation folder",)),
    "a fold's recipe edited": ResumeCase(_edit_fold_recipe, ("fold-0/recipe.toml", "not made from")),
    "a fold beyond the plan": ResumeCase(
        lambda root: shutil.copytree(root / "fold-0", root / "fold-2"), ("fold-2: not a fold of this 2-fold",)
    ),
    "a completed fold's model edited": ResumeCase(
        _write("fold-0/models/toy.json", "{}"), ("fold-0/models/toy.json differs from the file",)
    ),
}


@pytest.mark.parametrize("case", RESUME_CASES.values(), ids=RESUME_CASES.keys())
def test_cv_resume_refuses_a_changed_plan_and_writes_nothing(
    case: ResumeCase, site, interrupted_cv, tmp_path
):
    _use(site, FOLDS)
    root = tmp_path / "cv"
    shutil.copytree(interrupted_cv, root)
    case.edit(root)
    before = tree(tmp_path)
    refused(*invoke(["cv", "--resume", str(root)]), case.culprit)
    assert tree(tmp_path) == before


def test_cv_resume_uses_the_stored_recipe_not_the_live_file(site, interrupted_cv, tmp_path):
    _use(site, FOLDS)
    root = tmp_path / "cv"
    shutil.copytree(interrupted_cv, root)
    live = Path(json.loads((root / "cv.json").read_text())["recipe"])
    original = live.read_text()
    try:
        live.write_text(original.replace("epochs = 3", "epochs = 5"))
        code, out, err = invoke(["cv", "--resume", str(root)])
    finally:
        live.write_text(original)
    _clean(code, out, err)
    assert "epochs = 3" in (root / "fold-1" / "recipe.toml").read_text()
    pooled = _rows(root / "predictions_toy.csv")
    assert len(pooled) == 24 and len({row["file"] for row in pooled}) == 24  # each image tested once


@pytest.mark.parametrize(
    "folds, culprit",
    [
        ("30", ("class 'dark' has 12 independent group(s)", "30-fold cross-validation needs at least 31")),
        ("1", ("--folds",)),
    ],
    ids=["more folds than groups", "one fold"],
)
def test_a_failing_cv_start_leaves_nothing_behind(folds, culprit, site, tmp_path):
    _use(site, FOLDS)
    recipe = _cv_recipe(tmp_path / "recipes")
    (tmp_path / "cv").mkdir()
    before = tree(tmp_path)
    refused(*invoke(["cv", str(recipe), "--folds", folds, "-o", str(tmp_path / "cv")]), culprit)
    assert tree(tmp_path) == before

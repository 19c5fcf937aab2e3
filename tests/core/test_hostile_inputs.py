"""The hostile-input zoo (issue 12): bad recipes, data folders, run directories, files and command lines.

Every case runs the real command line in-process and asserts the same four things: the exit code, one
line on stderr that names the culprit, no traceback anywhere, and that nothing was written (no run
directory, no output file, a refused resume leaves its run directory byte for byte as it was). Most
cases use the toy plugin; data folders use tiny folder_split images.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ctframe.registry.plugins import PLUGINS_ENV, clear_registry_cache
from tests.conftest import TESTS
from tests.core.hostile_support import install_toy, invoke, tree, with_line, without_section
from tests.toy.recipe import toy_recipe_text

_spec = importlib.util.spec_from_file_location(
    "hostile_support", TESTS / "plugins" / "folder_split" / "support.py"
)
assert _spec is not None and _spec.loader is not None
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

SMALL = {"dataset": {"samples": 16}, "trainer": {"epochs": 2}, "evaluation": {"bootstrap": 0}}
"""The toy recipe made quick: the changes every case's recipe starts from."""
TOY = toy_recipe_text(SMALL)

TWO_PHASE = toy_recipe_text(
    SMALL,
    head={"component": "dense", "units": 8},
    trainer={
        "component": "two_phase",
        "batch_size": 8,
        "progress": False,
        "tensorboard": False,
        "initial": {"epochs": 1},
        "finetuned": {"epochs": 1, "unfreeze_last": 2},
    },
)
TWO_PHASE_PLUGINS = "toy,two_phase,dense_head"

FOLDER = toy_recipe_text(
    SMALL,
    dataset={
        "component": "folder_split",
        "root": "data",
        "classes": ["COVID", "non-COVID"],
        "positive_class": "COVID",
        "image_size": 16,
        "num_workers": 0,
        "leakage_check": False,
    },
)
FOLDER_PLUGINS = "toy,folder_split"


# ------------------------------------------------------------------ the base runs (built once)


@dataclass(frozen=True)
class BaseRuns:
    toy: Path
    two_phase: Path


@pytest.fixture(scope="module")
def base_runs(tmp_path_factory) -> BaseRuns:
    """A completed toy run and a completed two_phase run (toy data and backbone, dense head)."""
    root = tmp_path_factory.mktemp("hostile-base")
    install_toy(root / "site")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root / "site"))
        runs = {}
        for name, text, plugins in (("toy", TOY, "toy"), ("two_phase", TWO_PHASE, TWO_PHASE_PLUGINS)):
            patch.setenv(PLUGINS_ENV, plugins)
            clear_registry_cache()
            recipe = root / f"{name}.toml"
            recipe.write_text(text)
            code, _, err = invoke(["run", str(recipe), "--output", str(root / name)])
            assert code == 0, err
            (runs[name],) = (root / name).iterdir()
        clear_registry_cache()
    return BaseRuns(**runs)


@pytest.fixture(scope="module")
def toy_path(base_runs) -> Path:
    return base_runs.toy.parents[1] / "site"


# ------------------------------------------------------------------ one world per case


class World:
    """A case's scratch folder (also the current directory): recipes, data, copies of base runs."""

    def __init__(self, root: Path, base: BaseRuns):
        self.root = root
        self.base = base

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def recipe(self, text: str = TOY, name: str = "recipe.toml") -> str:
        return str(self.file(name, text))

    def data(self, per_class: int = 6) -> Path:
        return support.make_folder(self.root / "data", per_class=per_class)

    def run(self, which: str = "toy", state: str = "interrupted") -> Path:
        """A copy of a completed base run, marked ``state`` so that it can be resumed."""
        target = self.root / "run"
        shutil.copytree(getattr(self.base, which), target)
        (target / "status.json").write_text(json.dumps({"state": state}))
        return target

    @staticmethod
    def vouch(run: Path, name: str) -> None:
        """Record ``run/name`` as it is now in integrity.json, as if the run had written it so."""
        ledger = json.loads((run / "integrity.json").read_text())
        ledger["files"][name]["sha256"] = hashlib.sha256((run / name).read_bytes()).hexdigest()
        (run / "integrity.json").write_text(json.dumps(ledger))


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[World], list[str]]
    """Prepares the inputs in the world and returns the command line."""
    culprit: tuple[str, ...]
    """Every one of these appears in the error line."""
    code: int = 2
    plugins: str = "toy"
    during_run: bool = False
    """Found only once the run is under way (a forged integrity record vouches for the file): the run
    directory then records the failure, and the console may show the run's log lines before the error."""
    xfail: str | None = None


def case(id: str, setup, *culprit: str, **kwargs) -> Case:
    return Case(id, setup, culprit, **kwargs)


def run_recipe(text: str, *extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["run", w.recipe(text), *extra]


def toy_set(*overrides: str) -> Callable[[World], list[str]]:
    sets = [item for override in overrides for item in ("--set", override)]
    return lambda w: ["run", w.recipe(), *sets]


# ------------------------------------------------------------------ recipes


def _nested(w: World) -> list[str]:
    return ["run", w.recipe("x = " + "[" * 50_000 + "]" * 50_000 + "\n" + TOY)]


def _output_is_a_file(w: World) -> list[str]:
    w.file("taken", "")
    return ["run", w.recipe(with_line(TOY, "run", 'output = "taken"'))]


RECIPES = [
    case("malformed-toml", run_recipe(TOY + "[trainer\n"), "malformed TOML"),
    case("recipe-missing", lambda w: ["run", str(w.root / "nope.toml")], "nope.toml", "not found"),
    case("recipe-is-a-folder", lambda w: ["run", str(w.root)], "it is a folder"),
    case("recipe-not-utf8", lambda w: ["run", str(w.file("bad.toml", b"seed = '\xff\xfe'\n"))], "bad.toml"),
    case("recipe-empty", run_recipe(""), "missing section [dataset]"),
    case("missing-trainer-section", run_recipe(without_section(TOY, "trainer")), "missing section [trainer]"),
    case("missing-dataset-section", run_recipe(without_section(TOY, "dataset")), "[dataset]"),
    case(
        "component-missing",
        run_recipe(toy_recipe_text(SMALL, backbone={"component": None})),
        "[backbone] component: missing",
    ),
    case(
        "component-unknown",
        run_recipe(TOY.replace('"toy_backbone"', '"resnet9000"')),
        "unknown backbone component 'resnet9000'",
    ),
    case(
        "component-not-a-string",
        run_recipe(TOY.replace('component = "toy_head"', "component = 3")),
        "[head] component: expected a string",
    ),
    case(
        "section-not-a-table",
        run_recipe(with_line(without_section(TOY, "head"), "", 'head = "toy_head"')),
        "[head] must be a table",
    ),
    case(
        "unknown-top-level-key", run_recipe(with_line(TOY, "", "seeds = 3")), "unknown top-level key 'seeds'"
    ),
    case(
        "unknown-key-typo",
        run_recipe(with_line(TOY, "trainer", "epochz = 3")),
        "[trainer] epochz: unknown key; did you mean 'epochs'",
    ),
    case("unknown-run-key", run_recipe(with_line(TOY, "run", "sed = 3")), "[run] sed: unknown key"),
    case("bad-type-int", toy_set("dataset.samples=many"), "[dataset] samples"),
    case(
        "bad-type-float-for-int",
        run_recipe(toy_recipe_text(SMALL, backbone={"channels": 1.5})),
        "[backbone] channels",
    ),
    case("bad-type-list", run_recipe(with_line(TOY, "dataset", 'classes = "dark"')), "[dataset] classes"),
    case("bad-type-seed", run_recipe(TOY.replace("seed = 7", 'seed = "seven"')), "[run] seed"),
    case("bad-device", toy_set("run.device=tpu"), "[run] device"),
    case(
        "bad-type-bool",
        run_recipe(with_line(TOY, "evaluation", "calibration_bins = true")),
        "[evaluation] calibration_bins",
    ),
    case("out-of-range-low", toy_set("dataset.samples=2"), "[dataset] samples"),
    case("out-of-range-zero-epochs", toy_set("trainer.epochs=0"), "[trainer] epochs"),
    case("out-of-range-negative-lr", toy_set("trainer.lr=-1"), "[trainer] lr"),
    case("out-of-range-seed", toy_set("run.seed=-1"), "[run] seed"),
    case("one-class", run_recipe(with_line(TOY, "dataset", 'classes = ["dark"]')), "[dataset] classes"),
    case(
        "lr-inf",
        run_recipe(with_line(TWO_PHASE, "trainer.initial", "lr = inf")),
        "[trainer] initial.lr",
        "finite",
        plugins=TWO_PHASE_PLUGINS,
    ),
    case(
        "lr-nan",
        run_recipe(with_line(TWO_PHASE, "trainer.finetuned", "lr = nan")),
        "[trainer] finetuned.lr",
        "finite",
        plugins=TWO_PHASE_PLUGINS,
    ),
    case(
        "epsilon-inf-by-set",
        lambda w: ["run", w.recipe(TWO_PHASE), "--set", "trainer.epsilon=inf"],
        "[trainer] epsilon",
        plugins=TWO_PHASE_PLUGINS,
    ),
    case(
        "threshold-nan",
        run_recipe(with_line(TOY, "evaluation", "fixed_threshold = nan")),
        "[evaluation] fixed_threshold",
    ),
    case(
        "batch-size-1",
        lambda w: ["run", w.recipe(TWO_PHASE), "--set", "trainer.batch_size=1"],
        "[trainer] batch_size",
        "BatchNorm",
        plugins=TWO_PHASE_PLUGINS,
    ),
    case(
        "removed-backbone-precision",
        run_recipe(toy_recipe_text(SMALL, backbone={"component": "resnet50v2", "precision": "bf16"})),
        "[backbone] precision",
        "no longer a backbone option",
        plugins="toy,resnet_v2",
    ),
    case("required-file-missing", toy_set("dataset.require_file=labels.csv"), "labels.csv", "does not exist"),
    case("unknown-user-home", toy_set("dataset.require_file=~nosuchuser-ctframe/x"), "~nosuchuser-ctframe"),
    case(
        "unknown-user-home-output",
        run_recipe(with_line(TOY, "run", 'output = "~nosuchuser-ctframe/runs"')),
        "~nosuchuser-ctframe",
    ),
    case("output-is-a-file", _output_is_a_file, "taken"),
    case("weights-missing", toy_set("run.weights=missing.safetensors"), "missing.safetensors"),
    case("nested-50000-deep", _nested, "nested too deeply"),
    case(
        "metrics-a-string",
        run_recipe(TOY.replace('metrics = ["toy_accuracy"]', 'metrics = "toy_accuracy"')),
        "metrics: expected a non-empty list",
    ),
    case("metrics-empty", run_recipe(TOY.replace('["toy_accuracy"]', "[]")), "metrics: expected a non-empty"),
    case("metrics-missing", run_recipe(TOY.replace('metrics = ["toy_accuracy"]', "")), "metrics: missing"),
    case(
        "metrics-unknown",
        run_recipe(TOY.replace('"toy_accuracy"]', '"auroc"]')),
        "unknown metric component 'auroc'",
    ),
    case("metrics-not-a-name", run_recipe(TOY.replace('["toy_accuracy"]', "[1]")), "metrics[0]"),
    case(
        "metrics-bad-option",
        run_recipe(TOY.replace('["toy_accuracy"]', '[{ component = "toy_accuracy", bogus = 1 }]')),
        "[metrics[0]] bogus: unknown key",
    ),
    case(
        "metrics-twice",
        run_recipe(TOY.replace('["toy_accuracy"]', '["toy_accuracy", "toy_accuracy"]')),
        "toy_accuracy listed twice",
    ),
    case(
        "metrics-inside-a-table",
        run_recipe(
            with_line(TOY.replace('metrics = ["toy_accuracy"]', ""), "trainer", 'metrics = ["toy_accuracy"]')
        ),
        "metrics",
    ),
    case("set-without-equals", toy_set("trainer.epochs"), "--set expects section.key=value"),
    case("set-unknown-section", toy_set("trainer2.epochs=3"), "unknown section 'trainer2'"),
    case("set-bad-value", toy_set("trainer.epochs=abc"), "[trainer] epochs"),
]

# ------------------------------------------------------------------ data folders (folder_split)


def folder_case(
    id: str, damage: Callable[[Path], None], *culprit: str, command: str = "run", **kwargs
) -> Case:
    def setup(w: World) -> list[str]:
        damage(w.data())
        return [command, w.recipe(FOLDER)]

    return case(id, setup, *culprit, plugins=FOLDER_PLUGINS, **kwargs)


def _symlink_loop(root: Path) -> None:
    os.symlink("loop.png", root / "COVID" / "loop.png")


def _non_utf8_truncated(root: Path) -> None:
    data = support.image_bytes(5)
    with open(os.path.join(os.fsencode(root / "COVID"), b"scan\xff\xfe.png"), "wb") as handle:
        handle.write(data[: len(data) // 3])


def _empty_class(root: Path) -> None:
    for path in (root / "non-COVID").iterdir():
        path.unlink()


def _class_is_a_file(root: Path) -> None:
    shutil.rmtree(root / "non-COVID")
    (root / "non-COVID").write_text("")


def _truncated(root: Path) -> None:
    path = root / "COVID" / "img000.png"
    path.write_bytes(path.read_bytes()[:60])


def _cut_manifest(w: World) -> list[str]:
    w.data()
    w.file("m.csv", "file,sha256,class,split,group,status\nCOVID/img000.png,abc\n")  # a copy cut mid-row
    return ["run", w.recipe(with_line(FOLDER, "dataset", 'reuse_manifest = "m.csv"'))]


def _audit(id: str, damage: Callable[[Path], None], *culprit: str, **kwargs) -> Case:
    def setup(w: World) -> list[str]:
        damage(w.data())
        return ["audit", str(w.root / "data")]

    return case(id, setup, *culprit, plugins=FOLDER_PLUGINS, **kwargs)


DATA = [
    case(
        "data-root-missing",
        lambda w: ["run", w.recipe(FOLDER)],
        "data",
        "root",
        plugins=FOLDER_PLUGINS,
    ),
    case(
        "data-root-is-a-file",
        lambda w: (w.file("data", "not a folder"), ["run", w.recipe(FOLDER)])[1],
        "data",
        plugins=FOLDER_PLUGINS,
    ),
    folder_case("empty-class", _empty_class, "non-COVID"),
    folder_case("one-class-folder-missing", lambda root: shutil.rmtree(root / "non-COVID"), "non-COVID"),
    folder_case("class-is-a-file", _class_is_a_file, "non-COVID"),
    folder_case(
        "zero-byte-image", lambda root: (root / "COVID" / "img001.png").write_bytes(b""), "img001.png"
    ),
    folder_case("truncated-image", _truncated, "img000.png"),
    folder_case(
        "non-image-file", lambda root: (root / "COVID" / "notes.png").write_text("hello"), "notes.png"
    ),
    folder_case("symlink-loop", _symlink_loop, "loop.png"),
    folder_case("non-utf8-name-of-a-bad-image", _non_utf8_truncated, "scan\\xff\\xfe.png"),
    folder_case("truncated-image-validate", _truncated, "img000.png", command="validate"),
    case(
        "bad-class-name",
        run_recipe(FOLDER.replace('"non-COVID"]', '"../etc"]')),
        "[dataset] classes",
        plugins=FOLDER_PLUGINS,
    ),
    case(
        "positive-class-unknown",
        run_recipe(FOLDER.replace('positive_class = "COVID"', 'positive_class = "flu"')),
        "positive_class 'flu'",
        plugins=FOLDER_PLUGINS,
    ),
    case(
        "fractions-leave-no-training",
        run_recipe(with_line(FOLDER, "dataset", "test_fraction = 0.9\nval_fraction = 0.9")),
        "test_fraction",
        plugins=FOLDER_PLUGINS,
    ),
    case(
        "manifest-cut-mid-row",
        _cut_manifest,
        "m.csv",
        "fewer than 6 columns",
        plugins=FOLDER_PLUGINS,
    ),
    _audit("audit-empty-class", _empty_class, "non-COVID"),
    case("audit-missing-folder", lambda w: ["audit", str(w.root / "nowhere")], "nowhere", "not found"),
]

# ------------------------------------------------------------------ run directories on resume


def resume_case(
    id: str, damage: Callable[[Path], None], *culprit: str, which: str = "two_phase", **kw
) -> Case:
    def setup(w: World) -> list[str]:
        run = w.run(which)
        damage(run)
        return ["run", "--resume", str(run)]

    return case(id, setup, *culprit, plugins="toy" if which == "toy" else TWO_PHASE_PLUGINS, **kw)


def _swap_classes(run: Path) -> None:
    recipe = run / "recipe.toml"
    text = recipe.read_text()
    assert '"dark",\n    "bright",' in text
    recipe.write_text(text.replace('"dark",\n    "bright",', '"bright",\n    "dark",'))


class Payload:
    """Unpickling it would run code (it must never happen)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


LAST = "checkpoints/initial_last.pt"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pickle_with_code(path: Path) -> None:
    torch.save({"format": 1, "model": Payload(path.parent / "PWNED")}, path)


def _plain_state_dict(path: Path) -> None:
    torch.save({"w": torch.ones(2)}, path)


def _wrong_format(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    torch.save({**state, "format": 99}, path)


def _vouched(damage: Callable[[Path], None], name: str = LAST) -> Callable[[Path], None]:
    """Damage a file and rewrite its record too: the checkpoint reader must still refuse it."""

    def apply(run: Path) -> None:
        damage(run / name)
        World.vouch(run, name)

    return apply


def _ledger(content: str) -> Callable[[Path], None]:
    return lambda run: (run / "integrity.json").write_text(content)


def _ledger_escape(run: Path) -> None:
    ledger = json.loads((run / "integrity.json").read_text())
    ledger["files"]["../../etc/passwd"] = {"sha256": "0" * 64}
    (run / "integrity.json").write_text(json.dumps(ledger))


RESUME = [
    resume_case("edited-recipe-class-order", _swap_classes, "recipe.toml", "differs", which="toy"),
    resume_case(
        "edited-recipe-epochs",
        lambda run: (run / "recipe.toml").write_text((run / "recipe.toml").read_text() + "\n# edited\n"),
        "recipe.toml",
        which="toy",
    ),
    resume_case("recipe-deleted", lambda run: (run / "recipe.toml").unlink(), "no recipe.toml", which="toy"),
    resume_case(
        "completed-run",
        lambda run: (run / "status.json").write_text('{"state": "completed"}'),
        "already completed",
        which="toy",
    ),
    case(
        "resume-nowhere",
        lambda w: ["run", "--resume", str(w.root / "nowhere")],
        "nowhere",
        "not a run directory",
    ),
    resume_case("ledger-missing", lambda run: (run / "integrity.json").unlink(), "integrity.json", "missing"),
    resume_case("ledger-garbage", _ledger("{not json"), "integrity.json", "unreadable"),
    resume_case("ledger-wrong-shape", _ledger('{"format": 1, "files": []}'), "integrity.json"),
    resume_case("ledger-escapes-the-run", _ledger_escape, "integrity.json", "../../etc/passwd"),
    resume_case("checkpoint-truncated", lambda run: _truncate(run / LAST), "initial_last.pt", "differs"),
    resume_case("checkpoint-empty", lambda run: (run / LAST).write_bytes(b""), "initial_last.pt", "differs"),
    resume_case("checkpoint-pickled-code", lambda run: _pickle_with_code(run / LAST), "initial_last.pt"),
    resume_case("checkpoint-deleted", lambda run: (run / LAST).unlink(), "initial_last.pt", "missing"),
    resume_case("vouched-truncated", _vouched(_truncate), "initial_last.pt", "truncated or damaged"),
    resume_case(
        "vouched-empty", _vouched(lambda p: p.write_bytes(b"")), "initial_last.pt", "empty or cut short"
    ),
    resume_case("vouched-zeros", _vouched(lambda p: p.write_bytes(b"\0" * 4096)), "initial_last.pt"),
    resume_case("vouched-junk", _vouched(lambda p: p.write_text("hello")), "initial_last.pt", "not a torch"),
    resume_case(
        "vouched-pickled-code",
        _vouched(_pickle_with_code),
        "initial_last.pt",
        "refused by weights-only loading",
    ),
    resume_case(
        "vouched-plain-state-dict",
        _vouched(_plain_state_dict, "checkpoints/initial_best.pt"),
        "initial_best.pt",
        "plain state dict",
        during_run=True,
    ),
    resume_case(
        "vouched-wrong-format", _vouched(_wrong_format), "initial_last.pt", "format 99", during_run=True
    ),
    resume_case(
        "model-weights-tampered",
        lambda run: (run / "models" / "finetuned.safetensors").write_bytes(b"\0" * 64),
        "finetuned.safetensors",
        "differs",
    ),
    resume_case(
        "model-json-edited",
        lambda run: (run / "models" / "initial.json").write_text("{}"),
        "initial.json",
        "differs",
    ),
]

# ------------------------------------------------------------------ model files and predictions files


def _predict(damage: Callable[[Path], None] | None = None, *extra: str) -> Callable[[World], list[str]]:
    def setup(w: World) -> list[str]:
        run = w.run("toy", state="completed")
        if damage is not None:
            damage(run)
        image = w.file("images/a.png", support.image_bytes(1))
        return ["predict", str(run), str(image), "--output", str(w.root / "out.csv"), *extra]

    return setup


def _metrics(content: str | bytes, *extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["metrics", str(w.file("preds.csv", content)), "--output", str(w.root / "m"), *extra]


HEADER = "file,sample_id,true_class,predicted_class,positive_class,threshold,p_dark,p_bright\n"
ROW = "a.png,a,dark,dark,bright,0.5,0.7,0.3\nb.png,b,bright,bright,bright,0.5,0.2,0.8\n"

FILES = [
    case(
        "predict-tampered-weights",
        _predict(lambda run: (run / "models" / "toy.safetensors").write_bytes(b"\0" * 64)),
        "toy.safetensors",
        "sha256 differs",
    ),
    case(
        "predict-model-json-garbage",
        _predict(lambda run: (run / "models" / "toy.json").write_text("{oops")),
        "toy.json",
        "not a ctframe model file",
    ),
    case(
        "predict-model-json-deleted",
        _predict(lambda run: (run / "models" / "toy.json").unlink()),
        "toy.json",
        "not found",
    ),
    case("predict-no-such-model-key", _predict(None, "--model", "nosuch"), "no model 'nosuch'"),
    case(
        "predict-run-without-models",
        _predict(lambda run: shutil.rmtree(run / "models")),
        "no models",
    ),
    case(
        "predict-dataset-without-reader",
        lambda w: [
            "predict",
            str(w.run("toy", "completed")),
            str(w.root / "ghost.png"),
            "-o",
            str(w.root / "o.csv"),
        ],
        "toy_data",
        "cannot read single files",
    ),
    case("metrics-file-missing", lambda w: ["metrics", str(w.root / "none.csv")], "none.csv", "not found"),
    case("metrics-file-empty", _metrics(""), "preds.csv"),
    case("metrics-no-probability-columns", _metrics("file,true_class\na.png,dark\n"), "preds.csv"),
    case("metrics-probability-not-a-number", _metrics(HEADER + ROW.replace("0.7", "lots")), "not a number"),
    case("metrics-probabilities-do-not-sum", _metrics(HEADER + ROW.replace("0.7", "1.7")), "sum to 1"),
    case(
        "metrics-unknown-true-class", _metrics(HEADER + ROW.replace(",dark,dark,", ",grey,dark,")), "'grey'"
    ),
    case("metrics-unknown-positive", _metrics(HEADER + ROW, "--positive", "grey"), "grey"),
    case("metrics-not-utf8", _metrics(HEADER.encode() + b"\xff\xfe,\xff\n"), "preds.csv"),
    case("metrics-header-only", _metrics(HEADER), "no rows"),
]

# ------------------------------------------------------------------ command-line usage

USAGE = [
    case("unknown-command", lambda w: ["trian"], "No such command 'trian'"),
    case("unknown-option", lambda w: ["run", "--epochs", "3"], "No such option: --epochs"),
    case("run-without-recipe", lambda w: ["run"], "name a recipe file"),
    case(
        "resume-with-a-recipe", lambda w: ["run", w.recipe(), "--resume", str(w.root)], "--resume takes only"
    ),
    case("validate-missing-argument", lambda w: ["validate"], "Missing argument"),
    case(
        "predict-batch-size-zero",
        lambda w: ["predict", "m.json", "x.png", "--batch-size", "0"],
        "--batch-size",
    ),
    case("metrics-threshold-above-one", lambda w: ["metrics", "p.csv", "--threshold", "2"], "--threshold"),
    case(
        "on-bad-image-unknown", lambda w: ["predict", "m.json", "x.png", "--on-bad-image", "maybe"], "maybe"
    ),
    case("audit-set-without-equals", lambda w: ["audit", str(w.root), "--set", "novalue"], "novalue"),
    case("list-plugins-unknown-kind", lambda w: ["list-plugins", "--kind", "optimizer"], "--kind"),
]

CASES = [*RECIPES, *DATA, *RESUME, *FILES, *USAGE]


def _param(item: Case):
    marks = [pytest.mark.xfail(strict=True, reason=item.xfail)] if item.xfail else []
    return pytest.param(item, id=item.id, marks=marks)


def test_the_zoo_is_large_and_distinct():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("item", [_param(c) for c in CASES])
def test_hostile_input(item: Case, base_runs, toy_path, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(toy_path))
    monkeypatch.setenv(PLUGINS_ENV, item.plugins)
    monkeypatch.chdir(tmp_path)
    world = World(tmp_path, base_runs)
    argv = item.setup(world)
    before = tree(tmp_path)

    code, out, err = invoke(argv)

    shown = out + err
    assert "Traceback" not in shown, shown
    assert "weights_only=False" not in shown  # torch's advice, wrong for a hostile file
    lines = [line for line in err.splitlines() if line.strip()]
    if item.during_run:
        lines = [line for line in lines if not line.startswith(("INFO ", "WARNING "))]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    (line,) = lines
    assert line.startswith("error: "), line
    for part in item.culprit:
        assert part in line, f"{part!r} not in: {line}"
    assert code == item.code, line
    assert not list(tmp_path.rglob("PWNED")), "a pickled payload ran"
    if item.during_run:
        assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "failed"
    else:
        assert tree(tmp_path) == before, "a refused command wrote or changed files"

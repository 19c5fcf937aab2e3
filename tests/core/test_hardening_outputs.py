"""Where commands write (issue 26, item 1; issue 25): only their own output, never a run's files.

Each refused case runs the real command line in-process and asserts the exit code, one ``error:`` line
naming the culprit path or name, no traceback, and that every file under the case's folder is byte for
byte as it was. The accepted cases show that ``--force`` replaces what it names and nothing else. One
tiny run (toy backbone, folder_split data, two_phase trainer) is trained once for the module.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ctframe_export.onnx_exporter import OnnxExporter
from ctframe_export.options import OnnxOptions

from ctframe import CtframeError
from ctframe.registry.plugins import PLUGINS_ENV, clear_registry_cache
from ctframe.storage.files import write_text
from ctframe.storage.outputs import plain_name
from tests.conftest import TESTS
from tests.core.hostile_support import install_toy, invoke, refused, tree
from tests.toy.recipe import toy_recipe_text

_spec = importlib.util.spec_from_file_location(
    "outputs_support", TESTS / "plugins" / "folder_split" / "support.py"
)
assert _spec is not None and _spec.loader is not None
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

PLUGINS = "toy,folder_split,two_phase,dense_head,export,gradcam"
pytestmark = pytest.mark.filterwarnings("ignore:No complete tensor found")  # torch.export.save, harmless


@dataclass(frozen=True)
class Base:
    run: Path
    images: Path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    """A completed two-model run whose dataset reads single files, and its images."""
    root = tmp_path_factory.mktemp("outputs-base")
    install_toy(root / "site")
    images = support.make_folder(root / "images", per_class=6)
    text = toy_recipe_text(
        {"evaluation": {"bootstrap": 0}},
        dataset={
            "component": "folder_split",
            "root": str(images),
            "classes": support.CLASSES,
            "positive_class": "COVID",
            "image_size": 16,
            "num_workers": 0,
            "leakage_check": False,
        },
        head={"component": "dense", "units": 8},
        trainer={
            "component": "two_phase",
            "batch_size": 4,
            "progress": False,
            "tensorboard": False,
            "initial": {"epochs": 1},
            "finetuned": {"epochs": 1, "unfreeze_last": 2},
        },
    )
    (root / "recipe.toml").write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root / "site"))
        patch.setenv(PLUGINS_ENV, PLUGINS)
        clear_registry_cache()
        code, _, err = invoke(["run", str(root / "recipe.toml"), "--output", str(root / "runs")])
        clear_registry_cache()
    assert code == 0, err
    (run,) = (root / "runs").iterdir()
    return Base(run, images)


class World:
    """A case's folder (also the current directory) holding a copy of the run and of its images."""

    def __init__(self, root: Path, base: Base):
        self.root = root
        self.run = Path(shutil.copytree(base.run, root / "run"))
        self.images = Path(shutil.copytree(base.images, root / "images"))
        self.locked: list[Path] = []

    @property
    def image(self) -> str:
        return str(self.images / "COVID" / "img000.png")

    def file(self, name: str, content: str = "mine\n") -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return str(path)

    def lock(self, path: Path, mode: int) -> str:
        """``path`` made read-only (a file) or unwritable (a folder), unlocked again after the case."""
        os.chmod(path, mode)
        self.locked.append(path)
        return str(path)

    def predict(self, output: str | None, *extra: str) -> list[str]:
        where = [] if output is None else ["-o", output]
        return ["predict", str(self.run), self.image, *where, *extra]

    def export(self, output: str, *extra: str, format: str = "pt2") -> list[str]:
        return ["export", str(self.run), "-f", format, "-o", output, *extra]

    def evaluate(self, *extra: str) -> list[str]:
        return ["evaluate", str(self.run), "--data", str(self.images), *extra]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[World], list[str]]
    culprit: tuple[str, ...]


def case(id: str, setup: Callable[[World], list[str]], *culprit: str) -> Case:
    return Case(id, setup, culprit)


def _readonly_file(w: World) -> list[str]:
    path = Path(w.file("mine.csv"))
    return w.predict(w.lock(path, 0o444), "--force")


def _unwritable_folder(w: World, command: str) -> list[str]:
    folder = w.root / "locked"
    folder.mkdir()
    w.lock(folder, 0o555)
    if command == "export":
        return w.export(str(folder / "m.pt2"))
    return w.predict(str(folder / "p.csv"))


def _loose_model(w: World) -> list[str]:
    """A model file outside any run: --force still never writes over the command's own input."""
    loose = w.root / "loose"
    shutil.copytree(w.run / "models", loose)
    return ["predict", str(loose / "finetuned.json"), w.image, "-o", str(loose / "finetuned.json"), "--force"]


def _earlier_evaluation(w: World) -> list[str]:
    w.file("run/external/old/metrics.json", "{}\n")
    return w.evaluate("--name", "old")


CASES = [
    # evaluate --name: one plain folder name under RUN/external/
    case("evaluate-name-dotdot", lambda w: w.evaluate("--name", ".."), "--name '..'"),
    case("evaluate-name-absolute", lambda w: w.evaluate("--name", "/abs"), "--name '/abs'"),
    case("evaluate-name-separator", lambda w: w.evaluate("--name", "a/b"), "--name 'a/b'"),
    case("evaluate-name-backslash", lambda w: w.evaluate("--name", "a\\b"), "--name 'a\\\\b'"),
    case("evaluate-name-empty", lambda w: w.evaluate("--name", ""), "--name ''"),
    case("evaluate-earlier-results", _earlier_evaluation, "external/old", "--force"),
    # predict -o: never the run's files or the command's inputs; an existing file only with --force
    case(
        "predict-onto-model-json",
        lambda w: w.predict(str(w.run / "models" / "finetuned.json"), "--force"),
        "finetuned.json",
    ),
    case(
        "predict-onto-weights",
        lambda w: w.predict(str(w.run / "models" / "initial.safetensors"), "--force"),
        "initial.safetensors",
        "run directory",
    ),
    case(
        "predict-onto-run-metrics",
        lambda w: w.predict(str(w.run / "metrics.json"), "--force"),
        "metrics.json",
        "run directory",
    ),
    case(
        "predict-onto-a-run-name",
        lambda w: w.predict(str(w.run / "predictions_mine.csv")),
        "predictions_mine.csv",
        "run directory",
    ),
    case("predict-existing", lambda w: w.predict(w.file("mine.csv")), "mine.csv", "--force"),
    case(
        "predict-default-existing",
        lambda w: (w.file("predictions.csv"), w.predict(None))[1],
        "predictions.csv",
        "--force",
    ),
    case("predict-read-only-file", _readonly_file, "mine.csv", "read-only"),
    case(
        "predict-under-a-file",
        lambda w: (w.file("plain.txt", "x"), w.predict(str(w.root / "plain.txt" / "p.csv")))[1],
        "plain.txt",
        "not a folder",
    ),
    case("predict-unwritable-folder", lambda w: _unwritable_folder(w, "predict"), "locked", "not writable"),
    case(
        "predict-onto-an-input-image",
        lambda w: w.predict(w.image, "--force"),
        "img000.png",
        "input",
    ),
    case("predict-onto-loose-model", _loose_model, "finetuned.json", "input"),
    # export
    case("export-existing", lambda w: w.export(w.file("m.pt2")), "m.pt2", "--force"),
    case(
        "export-sidecar-existing",
        lambda w: (w.file("m.pt2.json"), w.export(str(w.root / "m.pt2")))[1],
        "m.pt2.json",
        "--force",
    ),
    case("export-unwritable-folder", lambda w: _unwritable_folder(w, "export"), "locked", "not writable"),
    case(
        "export-opset-99",
        lambda w: w.export(str(w.root / "m.onnx"), "--opset", "99", format="onnx"),
        "--opset 99",
        "supports opsets 7..",
    ),
    case(
        "export-opset-1",
        lambda w: w.export(str(w.root / "m.onnx"), "--opset", "1", format="onnx"),
        "--opset 1",
        "supports opsets 7..",
    ),
    # explain, card, metrics, demo-data
    case(
        "explain-into-a-folder-with-files",
        lambda w: ["explain", str(w.run), w.image, "-o", str(Path(w.file("cams/notes.txt")).parent)],
        "cams",
        "--force",
    ),
    case(
        "explain-into-run-plots",
        lambda w: ["explain", str(w.run), w.image, "-o", str(w.run / "plots"), "--force"],
        "plots",
        "run directory",
    ),
    case(
        "card-onto-run-report",
        lambda w: ["card", str(w.run), "-o", str(w.run / "report.html"), "--force"],
        "report.html",
        "run directory",
    ),
    case(
        "card-existing",
        lambda w: (w.file("run/model_card.md"), ["card", str(w.run)])[1],
        "model_card.md",
        "--force",
    ),
    case(
        "metrics-into-the-run",
        lambda w: ["metrics", str(w.run / "predictions_finetuned.csv"), "-o", str(w.run), "--force"],
        "run",
        "run directory",
    ),
    case(
        "demo-data-into-a-folder-with-files",
        lambda w: ["demo-data", str(Path(w.file("demo/readme.txt")).parent)],
        "demo",
        "--force",
    ),
]


@pytest.fixture
def world(base, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(base.run.parents[1] / "site"))
    monkeypatch.setenv(PLUGINS_ENV, PLUGINS)
    monkeypatch.chdir(tmp_path)
    clear_registry_cache()
    made = World(tmp_path, base)
    yield made
    for path in made.locked:  # so that pytest can clean up
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    clear_registry_cache()


def test_the_table_is_large_and_distinct():
    assert len(CASES) >= 16 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("item", CASES, ids=[c.id for c in CASES])
def test_a_refused_output_writes_nothing(item: Case, world: World):
    argv = item.setup(world)
    before = tree(world.root)

    code, out, err = invoke(argv)

    refused(code, out, err, item.culprit)
    assert tree(world.root) == before, "a refused command wrote or changed files"


def _unchanged(before: dict[str, str], after: dict[str, str], *changed: Path) -> None:
    """Every file that existed before is as it was, apart from ``changed``."""
    expected = {path: digest for path, digest in before.items() if Path(path) not in changed}
    assert {path: after.get(path) for path in expected} == expected


def test_predict_force_replaces_the_named_file_only(world: World):
    target = Path(world.file("mine.csv"))
    before = tree(world.root)
    code, _, err = invoke(world.predict(str(target), "--force"))
    assert code == 0, err
    assert target.read_text().startswith("file,")
    _unchanged(before, tree(world.root), target)


def test_predict_makes_missing_folders_of_its_output(world: World):
    target = world.root / "results" / "today" / "p.csv"
    code, _, err = invoke(world.predict(str(target)))
    assert code == 0, err
    assert target.read_text().startswith("file,")


def test_export_force_replaces_the_file_and_its_sidecar(world: World):
    target = Path(world.file("m.pt2"))
    sidecar = Path(world.file("m.pt2.json"))
    before = tree(world.root)
    code, _, err = invoke(world.export(str(target), "--force"))
    assert code == 0, err
    assert target.read_bytes()[:2] == b"PK" and '"format"' in sidecar.read_text()
    _unchanged(before, tree(world.root), target, sidecar)


def test_card_force_rewrites_its_own_card(world: World):
    card = Path(world.file("run/model_card.md"))
    code, _, err = invoke(["card", str(world.run), "--force"])
    assert code == 0, err
    assert card.read_text().startswith("# Model card")


def test_an_evaluation_named_like_a_run_file_stays_in_its_folder(world: World):
    kept = [world.run / "metrics.json", *world.run.glob("metrics_*.json"), *world.run.glob("predictions_*")]
    kept += list((world.run / "models").iterdir())
    before = {path: path.read_bytes() for path in kept}
    code, _, err = invoke(world.evaluate("--name", "metrics"))
    assert code == 0, err
    assert {path: path.read_bytes() for path in kept} == before
    assert (world.run / "external" / "metrics" / "metrics.json").is_file()


def test_evaluate_force_replaces_the_earlier_results_whole(world: World):
    stale = Path(world.file("run/external/old/subgroups.json", "{}\n"))
    code, _, err = invoke(world.evaluate("--name", "old", "--force"))
    assert code == 0, err
    assert not stale.exists() and (stale.parent / "metrics.json").is_file()
    assert not any(p.name.startswith(".replaced") for p in world.run.iterdir())


def test_a_failed_forced_evaluation_keeps_the_earlier_results(world: World):
    stale = Path(world.file("run/external/old/metrics.json", "{}\n"))
    code, out, err = invoke(world.evaluate("--name", "old", "--force", "--class-map", "X=nothing"))
    refused(code, out, err, ["--class-map"])
    assert stale.read_text() == "{}\n"
    assert not any(p.name.startswith(".replaced") for p in world.run.iterdir())


def test_an_atomic_write_never_replaces_a_read_only_file(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("mine")
    os.chmod(target, 0o444)
    try:
        with pytest.raises(PermissionError) as error:
            write_text(target, "theirs")
        assert error.value.filename == str(target) and target.read_text() == "mine"
        assert list(tmp_path.iterdir()) == [target]  # no temporary file left either
    finally:
        os.chmod(target, 0o644)


@pytest.mark.parametrize("name", ["ucsd-2", "metrics", "site A", "..."])
def test_a_plain_name_is_kept(name):
    assert plain_name(name, "--name") == name


def test_an_onnx_opset_the_converter_could_not_reach_is_refused_quietly(monkeypatch, tmp_path, capsys):
    """torch.onnx logs a failed opset conversion with a traceback and keeps its own opset: the exporter
    keeps that off the console and refuses a file of another opset than the one asked for."""

    def converted_to_18(*args, **kwargs):
        try:
            raise RuntimeError("invalid version")
        except RuntimeError as error:
            logging.getLogger("onnxscript.version_converter").warning("not converted", exc_info=error)
        return SimpleNamespace(model=SimpleNamespace(opset_imports={"": 18}, metadata_props={}))

    monkeypatch.setattr(torch.onnx, "export", converted_to_18)
    exporter = OnnxExporter(OnnxOptions(opset=17))
    with pytest.raises(CtframeError, match=r"--opset 17: .* opset 18\); ask for opset 18 or newer"):
        exporter.export(torch.nn.Identity(), torch.zeros(2, 3, 4, 4, dtype=torch.uint8), tmp_path / "m", {})
    shown = capsys.readouterr()
    assert "Traceback" not in shown.out + shown.err and not list(tmp_path.iterdir())

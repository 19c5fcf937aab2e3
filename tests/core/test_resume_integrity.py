"""Resume verifies its run directory (integrity.json), damaged checkpoints are one-line errors, stale
temporary files go, and internal failures show one line that points at run.log (issue 12, items 1, 3, 5)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from ctframe import RunError
from ctframe.commands.main import main
from ctframe.storage import integrity
from ctframe.storage.checkpoints import load_checkpoint, save_checkpoint
from ctframe.storage.files import write_bytes
from tests.conftest import TESTS
from tests.toy.recipe import toy_recipe_text

_spec = importlib.util.spec_from_file_location(
    "integrity_support", TESTS / "plugins" / "folder_split" / "support.py"
)
assert _spec is not None and _spec.loader is not None
support = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(support)

ROC_RECIPE = toy_recipe_text(metrics=["toy_accuracy", "roc_auc"], evaluation={"bootstrap": 0})


def _run(recipe: Path, output: Path, *extra: str) -> Path:
    assert main(["run", str(recipe), "--output", str(output), *extra]) == 0
    (run_dir,) = [p for p in output.iterdir() if p.is_dir()]
    return run_dir


def _interrupted(run_dir: Path) -> Path:
    """Mark a finished run as stopped before it completed (as after a kill in the last step)."""
    (run_dir / "status.json").write_text(json.dumps({"state": "interrupted"}))
    return run_dir


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ the example, end to end


def test_an_edited_recipe_is_refused_and_nothing_is_overwritten(toy_site, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTFRAME_PLUGINS", "toy,classification_metrics")
    recipe = tmp_path / "roc.toml"
    recipe.write_text(ROC_RECIPE)
    run_dir = _interrupted(_run(recipe, tmp_path / "runs"))
    ledger = json.loads((run_dir / "integrity.json").read_text())["files"]
    assert ledger["recipe.toml"]["kind"] == "recipe"
    assert {"models/toy.json", "models/toy.safetensors", "models/index.json"} <= set(ledger)

    # The class order decides which probability is "positive": swapped, ROC AUC would flip.
    resolved = run_dir / "recipe.toml"
    text = resolved.read_text()
    assert '"dark",\n    "bright",' in text
    resolved.write_text(text.replace('"dark",\n    "bright",', '"bright",\n    "dark",'))
    before = _snapshot(run_dir)
    capsys.readouterr()

    assert main(["run", "--resume", str(run_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"error: {resolved} differs from the file this run wrote (sha256 recorded in integrity.json): "
        "it was edited or damaged; restore it, or start a new run"
    )
    assert _snapshot(run_dir) == before  # metrics.json, status.json, split_summary.json: untouched

    resolved.write_text(text)  # restored: the same run resumes and completes
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"


def test_an_edited_split_manifest_is_refused(toy_site, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTFRAME_PLUGINS", "toy,folder_split")
    support.make_folder(tmp_path / "data", per_class=6)
    recipe = tmp_path / "folder.toml"
    folder = {"component": "folder_split", "root": "data", "classes": ["COVID", "non-COVID"]}
    folder |= {"positive_class": "COVID", "image_size": 16, "num_workers": 0, "leakage_check": False}
    recipe.write_text(toy_recipe_text(dataset=folder, evaluation={"bootstrap": 0}))
    import toy_ctframe

    def interrupted(self, model, data, context):
        raise KeyboardInterrupt  # after the manifest is written; the toy trainer needs toy data anyway

    monkeypatch.setattr(toy_ctframe.ToyTrainer, "fit", interrupted)
    assert main(["run", str(recipe), "--output", str(tmp_path / "runs")]) == 130
    (run_dir,) = (tmp_path / "runs").iterdir()
    manifest = run_dir / "split_manifest.csv"
    assert (
        json.loads((run_dir / "integrity.json").read_text())["files"]["split_manifest.csv"]["kind"]
        == "manifest"
    )
    lines = manifest.read_text().splitlines()
    moved = [line.replace(",test,", ",train,") if ",test," in line else line for line in lines]
    assert moved != lines
    manifest.write_text("\n".join(moved) + "\n")
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {manifest} differs from the file this run wrote")
    assert _snapshot(run_dir) == before


# ------------------------------------------------------------------ two_phase: checkpoints recorded, resume


TWO_PHASE = toy_recipe_text(
    dataset={"samples": 16},
    head={"component": "dense", "units": 8},
    trainer={
        "component": "two_phase",
        "batch_size": 8,
        "progress": False,
        "tensorboard": False,
        "initial": {"epochs": 2},
        "finetuned": {"epochs": 2, "unfreeze_last": 2},
    },
    evaluation={"bootstrap": 0},
)


def test_a_two_phase_run_interrupted_mid_training_resumes_verified(toy_site, tmp_path, monkeypatch, capsys):
    from ctframe_two_phase import checkpoints

    monkeypatch.setenv("CTFRAME_PLUGINS", "toy,two_phase,dense_head")
    recipe = tmp_path / "tp.toml"
    recipe.write_text(TWO_PHASE)
    save = checkpoints.save

    def stop_after_the_first_finetuned_epoch(path, checkpoint, **where):
        save(path, checkpoint, **where)
        if path.name == "finetuned_last.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "save", stop_after_the_first_finetuned_epoch)
    assert main(["run", str(recipe), "--output", str(tmp_path / "runs")]) == 130
    monkeypatch.setattr(checkpoints, "save", save)
    (run_dir,) = (tmp_path / "runs").iterdir()
    files = json.loads((run_dir / "integrity.json").read_text())["files"]
    names = {"initial_best.pt", "initial_last.pt", "finetuned_last.pt"}
    assert {f"checkpoints/{n}" for n in names} <= set(files)
    assert all("pending" not in entry for entry in files.values())
    assert all(
        entry["kind"] == "checkpoint" for name, entry in files.items() if name.startswith("checkpoints/")
    )

    stale = [run_dir / "checkpoints" / ".initial_last.pt.k2j4_x9q.tmp", run_dir / ".recipe.toml.abcdefgh.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)  # what a kill during atomic_open leaves behind
    keep = run_dir / "checkpoints" / ".notes.tmp"  # not one of atomic_open's names
    keep.write_text("mine")

    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert not [p for p in stale if p.exists()] and keep.exists()
    assert "removed the stale temporary file" in (run_dir / "run.log").read_text()
    assert "finetuned: resuming after epoch 1/2" in (run_dir / "run.log").read_text()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"


# ------------------------------------------------------------------ the record survives a kill at any moment


def _recording_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    integrity.start(run)
    return run


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after the raise runs."""


def test_a_kill_before_the_rename_leaves_the_old_file_verifiable(tmp_path, monkeypatch):
    run = _recording_run(tmp_path)
    target = run / "checkpoints" / "a_last.pt"
    integrity.write_recorded(target, b"epoch 1", run, kind="checkpoint")

    def killed(path, data):
        raise Killed

    monkeypatch.setattr(integrity, "write_bytes", killed)
    with pytest.raises(Killed):
        integrity.write_recorded(target, b"epoch 2", run, kind="checkpoint")
    monkeypatch.undo()
    assert target.read_bytes() == b"epoch 1"
    assert "pending" in json.loads((run / "integrity.json").read_text())["files"]["checkpoints/a_last.pt"]
    assert integrity._problem(run, "checkpoints/a_last.pt", _entry(run, "checkpoints/a_last.pt")) is None


def _entry(run: Path, name: str) -> dict:
    return json.loads((run / "integrity.json").read_text())["files"][name]


def test_a_kill_after_the_rename_leaves_the_new_file_verifiable(tmp_path, monkeypatch):
    run = _recording_run(tmp_path)
    target = run / "recipe.toml"
    integrity.write_recorded(target, b"old", run)
    update = integrity._update
    calls = []

    def killed_on_commit(root, name, **values):
        calls.append(values)
        if "sha256" in values:
            raise Killed
        update(root, name, **values)

    monkeypatch.setattr(integrity, "_update", killed_on_commit)
    with pytest.raises(Killed):
        integrity.write_recorded(target, b"new", run)
    monkeypatch.undo()
    assert target.read_bytes() == b"new"
    assert integrity._problem(run, "recipe.toml", _entry(run, "recipe.toml")) is None
    target.write_bytes(b"edited")
    assert "differs" in integrity._problem(run, "recipe.toml", _entry(run, "recipe.toml"))


def test_settle_ends_interrupted_writes(tmp_path, monkeypatch):
    run = _recording_run(tmp_path)
    integrity.write_recorded(run / "kept.bin", b"one", run)

    def killed(path, data):
        raise Killed

    monkeypatch.setattr(integrity, "write_bytes", killed)
    with pytest.raises(Killed):
        integrity.write_recorded(run / "kept.bin", b"two", run)
    with pytest.raises(Killed):
        integrity.write_recorded(run / "never.bin", b"first", run)  # a first write that never landed
    monkeypatch.undo()
    integrity.verify(run)
    integrity.settle(run)
    files = json.loads((run / "integrity.json").read_text())["files"]
    assert set(files) == {"kept.bin"} and "pending" not in files["kept.bin"]
    write_bytes(run / "kept.bin", b"two")  # the pending hash is gone: this is now an edit
    with pytest.raises(RunError, match="kept.bin differs"):
        integrity.verify(run)


def test_files_outside_a_run_are_written_without_a_record(tmp_path):
    target = integrity.write_recorded(tmp_path / "scratch" / "a_best.pt", b"x", tmp_path / "scratch")
    assert target.read_bytes() == b"x"
    assert not (tmp_path / "scratch" / "integrity.json").exists()
    save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(1)}, run_dir=tmp_path)
    assert not (tmp_path / "integrity.json").exists()


def test_a_recorded_checkpoint_is_written_through_the_record(tmp_path):
    run = _recording_run(tmp_path)
    save_checkpoint(run / "checkpoints" / "x_last.pt", {"format": 1, "w": torch.ones(1)}, run_dir=run)
    entry = _entry(run, "checkpoints/x_last.pt")
    assert entry["kind"] == "checkpoint" and entry["sha256"] == integrity.sha256_file(
        run / "checkpoints/x_last.pt"
    )
    integrity.verify(run)
    with pytest.raises(ValueError, match="not inside the run directory"):
        integrity.write_recorded(tmp_path / "elsewhere.bin", b"", run)


# ------------------------------------------------------------------ load_checkpoint


class Payload:
    def __reduce__(self):
        return (exec, ("raise SystemExit('the payload ran')",))


def _damaged(tmp_path: Path) -> dict[str, Path]:
    good = save_checkpoint(tmp_path / "good.pt", {"format": 1, "model": {"w": torch.ones(3)}})
    data = good.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "tail-cut": data[:-30],
        "empty": b"",
        "junk": b"definitely not a checkpoint",
    }
    paths = {name: write_bytes(tmp_path / f"{name}.pt", content) for name, content in files.items()}
    torch.save({"model": Payload()}, tmp_path / "code.pt")
    paths["code"] = tmp_path / "code.pt"
    return paths


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("truncated", "is truncated or damaged"),
        ("tail-cut", "is truncated or damaged"),
        ("empty", "is empty or cut short"),
        ("junk", "is not a torch checkpoint"),
        ("code", "was refused by weights-only loading: it names the Python object"),
    ],
)
def test_damaged_checkpoints_are_one_line_run_errors_naming_the_file(tmp_path, name, problem):
    path = _damaged(tmp_path)[name]
    with pytest.raises(RunError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert message.startswith(f"checkpoint {path} {problem}")
    assert "\n" not in message and "weights_only=False" not in message and "add_safe_globals" not in message


def test_an_empty_checkpoint_is_never_taken_for_ctrl_d(tmp_path):
    path = write_bytes(tmp_path / "empty.pt", b"")
    with pytest.raises(RunError):  # not EOFError, which the command line would report as "interrupted"
        load_checkpoint(path)


def test_a_plain_state_dict_where_a_checkpoint_is_expected(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"conv.weight": torch.ones(2), "conv.bias": torch.zeros(2)}, path)
    with pytest.raises(RunError, match=r"is a plain state dict of 2 tensors, not a checkpoint \(no 'format'"):
        load_checkpoint(path, required=("format", "model"))
    torch.save({"format": 1}, path)
    with pytest.raises(RunError, match="lacks 'model'; it is not a checkpoint of this kind"):
        load_checkpoint(path, required=("format", "model"))
    torch.save([torch.ones(1)], path)
    with pytest.raises(RunError, match="holds a list, not a checkpoint dictionary"):
        load_checkpoint(path)


def test_mmap_loading_checks_structure(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"format": 1, "model": {"w": torch.arange(4.0)}})
    assert torch.equal(load_checkpoint(path, mmap=True)["model"]["w"], torch.arange(4.0))
    bad = write_bytes(tmp_path / "bad.pt", b"\0" * 100)
    with pytest.raises(RunError, match="bad.pt"):
        load_checkpoint(bad, mmap=True)


def test_two_phase_checkpoint_reader(tmp_path):
    from ctframe_two_phase import checkpoints

    best, last = checkpoints.checkpoint_paths(tmp_path, "initial")
    save_checkpoint(best, {"format": 1, "phase": "initial", "epoch": 0, "model": {}})
    assert checkpoints.load(best)["phase"] == "initial"
    shutil.copy(best, last)  # a best checkpoint where a resume point is expected
    with pytest.raises(RunError, match="lacks 'optimizer', 'early_stopping', 'history', 'rng'"):
        checkpoints.load(last)
    save_checkpoint(best, {"format": 3, "phase": "initial", "epoch": 0, "model": {}})
    with pytest.raises(RunError, match="has format 3; this two_phase trainer reads formats 1 to 2"):
        checkpoints.load(best)


# ------------------------------------------------------------------ internal failures: one line, run.log


def test_an_internal_failure_points_at_run_log_and_shows_no_traceback(
    toy_site, toy_recipe, tmp_path, monkeypatch, capsys
):
    import toy_ctframe

    def broken_fit(self, model, data, context):
        context.logger.exception("a plugin logs its own traceback", exc_info=ValueError("inner"))
        raise ZeroDivisionError("bug in a plugin\nsecond line of detail")

    monkeypatch.setattr(toy_ctframe.ToyTrainer, "fit", broken_fit)
    assert main(["run", str(toy_recipe), "--output", str(tmp_path / "runs")]) == 1
    captured = capsys.readouterr()
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "Traceback" not in captured.out + captured.err
    assert captured.err.strip().splitlines()[-1] == (
        f"internal error: ZeroDivisionError: bug in a plugin; the traceback is in {run_dir / 'run.log'}"
    )
    log = (run_dir / "run.log").read_text()
    assert "Traceback" in log and "internal failure" in log and "ValueError: inner" in log
    assert "a plugin logs its own traceback" in captured.err and "inner" not in captured.err
    assert json.loads((run_dir / "status.json").read_text())["error"] == "ZeroDivisionError: bug in a plugin"


def test_an_eof_error_is_an_internal_error_not_an_interrupt(toy_site, toy_recipe, monkeypatch, capsys):
    import toy_ctframe

    def cut_short(options, context):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(toy_ctframe, "build_data", cut_short)
    assert main(["validate", str(toy_recipe)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["internal error: EOFError: Ran out of input (set CTFRAME_DEBUG=1 for the traceback)"]

"""Atomic writes and weights-only checkpoints."""

from __future__ import annotations

from datetime import datetime

import pytest
import torch

from ctframe.storage.checkpoints import load_checkpoint, save_checkpoint
from ctframe.storage.files import atomic_open, write_text
from ctframe.storage.rundir import RunDirectory


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_checkpoints_round_trip_weights_only(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "rng": torch.get_rng_state()}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", state))
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["epoch"] == 3


class Sneaky:
    """Anything that is not a tensor or a plain value."""


def test_checkpoints_with_arbitrary_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": Sneaky()}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        load_checkpoint(path)


def test_run_directories_are_unique(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5)
    first = RunDirectory.create(tmp_path, "quick", now)
    second = RunDirectory.create(tmp_path, "quick", now)
    assert first.path.name == "quick-20260102-030405"
    assert second.path.name == "quick-20260102-030405-1"


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0)
    os.umask(mask)
    path = write_text(tmp_path / "report.html", "<html></html>")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_state_dicts_are_read_weights_only_from_either_format(tmp_path):
    from safetensors.torch import save_file

    from ctframe.base.errors import DataError
    from ctframe.storage.checkpoints import read_state_dict

    weights = {"conv.weight": torch.ones(2, 3)}
    save_file(weights, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": weights, "epoch": 4}, tmp_path / "wrapped.pt")
    for name in ("w.safetensors", "wrapped.pt"):
        assert torch.equal(read_state_dict(tmp_path / name)["conv.weight"], weights["conv.weight"])
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"cannot read a torch state dict from .*broken.pt: \w+"):
        read_state_dict(tmp_path / "broken.pt")
    torch.save({"payload": Sneaky()}, tmp_path / "code.pt")
    with pytest.raises(DataError, match="cannot read a torch state dict"):
        read_state_dict(tmp_path / "code.pt")
    torch.save({"a": {"b": torch.ones(1)}, "c": 1}, tmp_path / "nested.pt")
    with pytest.raises(DataError, match="does not hold a flat state dict of tensors"):
        read_state_dict(tmp_path / "nested.pt")

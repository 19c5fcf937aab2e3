"""Every registered trainer: built from its defaults, it has ``fit`` and every member of the Trainer
protocol, with values the engine accepts (``check_trainer_contract``, the engine's own check)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctframe import Kind, Trainer
from ctframe.base.training import check_trainer_contract
from tests.core.contracts.components import build, names


def _protocol_members() -> set[str]:
    declared = set(getattr(Trainer, "__annotations__", {}))
    methods = {name for name, value in vars(Trainer).items() if callable(value) and not name.startswith("_")}
    return declared | methods


@pytest.mark.parametrize("name", names(Kind.TRAINER))
def test_trainer_has_fit_and_the_protocol_members(name: str, tmp_path: Path):
    trainer = build(Kind.TRAINER, name, tmp_path)
    members = _protocol_members()
    assert "fit" in members
    missing = sorted(member for member in members if not hasattr(trainer, member))
    assert not missing, f"trainer {name!r} lacks {missing}"
    assert isinstance(trainer, Trainer) and callable(trainer.fit)
    check_trainer_contract(trainer, f"trainer {name!r}")

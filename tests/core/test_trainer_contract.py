"""The Trainer contract: what the engine uses of a trainer, checked once when the trainer is built."""

from __future__ import annotations

import pytest

from ctframe.base.errors import PluginError
from ctframe.base.training import Trainer, check_trainer_contract
from ctframe.commands.main import main


class Complete:
    precision = "fp32"
    supports_distributed = False

    def fit(self, model, data, context):
        return []


def test_a_complete_trainer_passes_and_is_a_trainer():
    check_trainer_contract(Complete(), "trainer 'complete'")
    assert isinstance(Complete(), Trainer)


@pytest.mark.parametrize(
    ("member", "value", "message"),
    [
        ("precision", None, None),  # the trainer chooses its own arithmetic
        ("precision", 16, "has precision = 16; the Trainer contract wants"),
        ("supports_distributed", 1, "has supports_distributed = 1; the Trainer contract wants True or False"),
        ("fit", "not callable", "has fit = 'not callable'"),
    ],
)
def test_member_values(member, value, message):
    trainer = Complete()
    setattr(trainer, member, value)
    if message is None:
        check_trainer_contract(trainer, "trainer 't'")
        return
    with pytest.raises(PluginError, match=message):
        check_trainer_contract(trainer, "trainer 't'")


@pytest.mark.parametrize("member", ["precision", "supports_distributed"])
def test_validate_refuses_a_trainer_without_a_member_in_one_line(
    toy_site, toy_recipe, monkeypatch, capsys, member
):
    import toy_ctframe

    monkeypatch.delattr(toy_ctframe.ToyTrainer, member)
    assert main(["validate", str(toy_recipe)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"trainer 'toy_trainer' (plugin 'toy') lacks `{member}`" in error
    assert len(error.splitlines()) == 1

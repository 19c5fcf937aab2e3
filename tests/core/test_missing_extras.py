"""Optional packages that are not installed are named once, with the install command, and never shown
as a failure (issue 25, item 4): the report's Grad-CAM overlays and the trainer's TensorBoard events."""

from __future__ import annotations

import logging
import sys

from ctframe import MissingExtraError
from ctframe.base.contracts import Kind
from ctframe.report import gallery


class _Registry:
    def names(self, kind):
        return ["gradcam"] if kind == Kind.EXPLAINER else []


def test_a_missing_grad_cam_package_is_a_note_not_a_failure(monkeypatch):
    def missing(**_):
        raise MissingExtraError(
            "Grad-CAM explanations need the grad-cam package: pip install 'ctframe[explain]'"
        )

    monkeypatch.setattr(gallery, "make_explainer", missing)
    draw, note = gallery.overlay_function(_Registry())
    assert draw is None
    assert note.startswith("Grad-CAM overlays left out:") and "pip install 'ctframe[explain]'" in note
    assert "failed" not in note


def test_a_missing_tensorboard_package_is_said_once(monkeypatch, tmp_path, caplog):
    from ctframe_two_phase import progress

    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")] or [
        "tensorboard"
    ]:
        monkeypatch.setitem(sys.modules, name, None)  # imported earlier in this process or not: ImportError
    monkeypatch.setattr(progress, "_SAID", [])
    logger = logging.getLogger("tests.missing-extras")  # not under "ctframe", whose records a run keeps
    with caplog.at_level(logging.INFO, logger=logger.name):
        for phase in ("initial", "finetuned"):
            writer = progress.TensorBoardLog(tmp_path / phase, True, logger)
            writer.close()
    said = [r.getMessage() for r in caplog.records if "tensorboard" in r.getMessage()]
    assert len(said) == 1 and "pip install 'ctframe[tensorboard]'" in said[0]
    assert not (tmp_path / "initial").exists()

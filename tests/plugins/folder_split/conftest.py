"""Makes the helpers in support.py importable as ``folder_split_support`` (tests use importlib mode)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("folder_split_support", Path(__file__).with_name("support.py"))
assert _spec is not None and _spec.loader is not None
support = importlib.util.module_from_spec(_spec)
sys.modules["folder_split_support"] = support
_spec.loader.exec_module(support)


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch):
    monkeypatch.setenv("CTFRAME_PLUGINS", "folder_split")

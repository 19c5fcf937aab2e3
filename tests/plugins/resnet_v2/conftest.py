"""Fixtures for the backbone tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """The test machine's cores are shared; OpenMP threads waiting on each other cost 10x under load."""
    yield

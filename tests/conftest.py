"""Shared fixtures. Tests choose their plugins with CTFRAME_PLUGINS; nothing else installed leaks in."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ctframe.registry.plugins import PLUGINS_ENV, clear_registry_cache

TESTS = Path(__file__).parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"
QUICKSTART_PLUGINS = "folder_split,resnet_v2,dense_head,two_phase,classification_metrics"


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """CTFRAME_CACHE_DIR in a temporary folder, so no test writes into ~/.cache. Session-wide (and in
    os.environ) so that module-scoped fixtures and the subprocesses tests start get it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CTFRAME_CACHE_DIR", str(tmp_path_factory.mktemp("ctframe-cache")))
        yield


@pytest.fixture(autouse=True)
def _fresh_registry():
    clear_registry_cache()
    yield
    clear_registry_cache()


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): two
    threads on the shared 2-core box spin against each other, and one does the same arithmetic every run."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def quickstart_plugins(monkeypatch):
    """Only the quick start's plugins, whatever else is installed."""
    monkeypatch.setenv(PLUGINS_ENV, QUICKSTART_PLUGINS)


def install_distribution(site: Path, module_source: Path, name: str, entry_point: str) -> Path:
    """Write a minimal installed distribution (module + dist-info with an entry point) into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(module_source, site / module_source.name)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    module = module_source.stem
    (info / "entry_points.txt").write_text(f"[ctframe]\n{entry_point} = {module}\n")
    return site


@pytest.fixture
def toy_site(tmp_path, monkeypatch) -> Path:
    """The toy plugin installed as third-party package ``toy-ctframe`` (entry point ``toy``)."""
    site = install_distribution(tmp_path / "site", TESTS / "toy" / "toy_ctframe.py", "toy_ctframe", "toy")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(PLUGINS_ENV, "toy")
    yield site
    sys.modules.pop("toy_ctframe", None)


@pytest.fixture
def toy_recipe(tmp_path) -> Path:
    recipe = tmp_path / "recipes" / "toy.toml"
    recipe.parent.mkdir()
    shutil.copy(TESTS / "toy" / "toy.toml", recipe)
    return recipe

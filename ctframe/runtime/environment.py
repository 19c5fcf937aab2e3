"""What a run records about the machine and software it ran on."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRACKED_PACKAGES = (
    "ctframe",
    "torch",
    "torchvision",
    "numpy",
    "scikit-learn",
    "pillow",
    "pydantic",
    "pluggy",
)


def seed_everything(seed: int) -> None:
    """One seed for python, numpy and torch (all devices)."""

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit(folder: Path) -> dict[str, Any] | None:
    """The commit of the git checkout holding ``folder``, and whether it has local changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def plugin_versions() -> dict[str, str | None]:
    """Versions of the packages a model file depends on (the core's tracked packages)."""
    return {name: _version(name) for name in TRACKED_PACKAGES}


def describe_environment(device: str, seed: int, recipe_dir: Path, plugins: dict[str, str]) -> dict[str, Any]:

    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "seed": seed,
        "packages": {name: _version(name) for name in TRACKED_PACKAGES},
        "plugins": plugins,
        "git": git_commit(recipe_dir),
    }

"""Weights for the torchvision backbone: torchvision's published ImageNet files or a local state dict."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from ctframe import WeightsError
from ctframe.api.data import download_checked
from ctframe.api.training import load_fitting_state, read_state_dict

from .model import HEAD_ATTRIBUTES, TorchvisionBackbone

TORCH_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def default_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"  # layout: ignore (torch hub's folder, not a run's)


def fetch(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``target`` unless it is there. torchvision file names carry a sha256 prefix
    (``resnet18-f37072fd.pth``) that the download is checked against; the file appears only complete."""
    if target.is_file():
        return target
    stem = target.name.split(".")[0]
    hash_prefix = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    return download_checked(url, target, "sha256", hash_prefix, timeout=timeout, error_type=WeightsError)


def imagenet_file(arch: str, cache_dir: Path | None, logger: logging.Logger | None = None) -> Path:
    """torchvision's default ImageNet weights for ``arch``, downloaded into ``cache_dir`` once."""
    from torchvision import models

    entry = models.get_model_weights(arch).DEFAULT
    target = Path(cache_dir or default_cache_dir()) / entry.url.rsplit("/", 1)[-1]
    if not target.is_file():
        (logger or logging.getLogger("ctframe")).info("downloading %s to %s", entry.url, target)
    return fetch(entry.url, target)


def _as_backbone_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept this backbone's own keys, a Classifier's (``backbone.``) or a whole torchvision model's."""
    if state and all(key.startswith("backbone.") for key in state):
        state = {key.removeprefix("backbone."): value for key, value in state.items()}
    if state and not any(key.startswith("model.") for key in state):
        state = {f"model.{key}": value for key, value in state.items()}
    # The classifier that the backbone dropped: its tensors are not ours to load.
    return {key: value for key, value in state.items() if key.split(".")[1] not in HEAD_ATTRIBUTES}


def _torchvision_key_fixes(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old densenet files name ``norm.1``, torchvision's loader renames them to ``norm1``."""
    if not arch.startswith("densenet"):
        return state
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$"
    )
    fixed = {}
    for key, value in state.items():
        match = pattern.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


def load_weights(backbone: TorchvisionBackbone, path: Path) -> None:
    """Load a state dict file, refusing the first tensor whose name or shape does not fit."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; give an existing file, 'imagenet' or 'none'")
    if path.suffix not in TORCH_SUFFIXES:
        suffixes = ", ".join(TORCH_SUFFIXES)
        raise WeightsError(f"{path}: torchvision weights must be a torch state dict ({suffixes})")
    state = _as_backbone_keys(_torchvision_key_fixes(backbone.arch, read_state_dict(path, WeightsError)))
    load_fitting_state(
        backbone,
        state,
        where=str(path),
        error_type=WeightsError,
        hint=f"use a {backbone.arch} state dict (torchvision's, or saved by ctframe)",
        name=lambda key: key.removeprefix("model."),  # as torchvision names its own tensors
    )

"""``ctframe audit FOLDER``: a dataset folder's audit, from the dataset plugin that knows its layout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ctframe.base.contracts import AuditReport
from ctframe.base.errors import CtframeError
from ctframe.registry.plugins import Registry, get_registry


def audit_folder(root: Path, options: Mapping[str, str], registry: Registry | None = None) -> AuditReport:
    """The first report a dataset plugin's ``ctframe_audit`` hook gives for ``root``; ``options`` go to it."""
    root = Path(root)
    if not root.exists():
        raise CtframeError(f"{root}: folder not found; pass the dataset root folder")
    hook = (registry or get_registry()).manager.hook
    report = hook.ctframe_audit(root=root, options=dict(options))
    if report is None:
        raise CtframeError(f"{root}: no installed dataset plugin recognises this folder layout")
    return report

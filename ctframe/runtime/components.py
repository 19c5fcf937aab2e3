"""Components a command builds by name from the command line: exporters and explainers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from ctframe.base.contracts import BuildContext, Component, Kind
from ctframe.base.errors import CtframeError, PluginError
from ctframe.registry.plugins import Registry


def build_component(
    registry: Registry, kind: Kind, name: str, values: Mapping[str, Any] | None, flag: str
) -> tuple[Component, Any]:
    """A registered exporter or explainer and its validated options (``flag`` names the choice in errors)."""
    component = registry.get(kind, name)
    if component is None:
        clash = registry.clash_message(kind, name)
        if clash:
            raise PluginError(clash)
        known = ", ".join(registry.names(kind)) or f"none installed (ctframe list-plugins --kind {kind})"
        raise PluginError(f"{flag} {name!r}: no such {kind}; available: {known}")
    try:
        options = component.options.model_validate(dict(values or {}))
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        at = ".".join(str(p) for p in first["loc"]) or "(options)"
        raise CtframeError(f"{kind} {name!r}: option {at}: {first['msg']}") from None
    return component, options


def component_context() -> BuildContext:
    return BuildContext(seed=0, device="cpu", recipe_dir=Path.cwd())


def uncompiled(module: nn.Module) -> nn.Module:
    """``module`` with every ``torch.compile`` wrapper inside it removed (in place): an export or an
    explanation needs the plain eager modules, and their forward hooks."""
    for parent in module.modules():
        if getattr(parent, "_compiled_call_impl", None) is not None:  # what nn.Module.compile() sets
            parent._compiled_call_impl = None
        for name, child in list(parent.named_children()):
            original = getattr(child, "_orig_mod", None)  # torch.compile(module) returns a wrapper
            if isinstance(original, nn.Module):
                setattr(parent, name, uncompiled(original))
    return module

"""What ``ctframe list-plugins`` shows, as plain data (the CLI renders it)."""

from __future__ import annotations

from typing import Any

from ctframe.contracts import Kind
from ctframe.plugins import Registry


def option_rows(options: Any) -> list[dict[str, Any]]:
    rows = []
    for name, field in options.model_fields.items():
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        rows.append(
            {
                "name": name,
                "type": getattr(field.annotation, "__name__", None)
                or str(field.annotation).replace("typing.", ""),
                "required": field.is_required(),
                "default": default
                if isinstance(default, str | int | float | bool | list | type(None))
                else str(default),
                "description": field.description or "",
            }
        )
    return rows


def describe_plugins(registry: Registry, kind: Kind | None = None, verbose: bool = False) -> dict[str, Any]:
    components = []
    for component in registry.all_components():
        if kind is not None and component.kind != kind:
            continue
        info = registry.plugins.get(component.plugin)
        entry = {
            "component": component.name,
            "kind": component.kind.value,
            "plugin": component.plugin,
            "package": info.package if info else component.plugin,
            "version": info.version if info else "?",
            "description": component.description,
        }
        if verbose:
            entry["options"] = option_rows(component.options)
        components.append(entry)
    broken = [
        {"plugin": p.name, "package": p.package, "version": p.version, "error": p.error}
        for p in registry.broken()
    ]
    return {"components": components, "broken": broken}

"""What ``ctframe list-plugins`` shows, as plain data (the CLI renders it)."""

from __future__ import annotations

from typing import Any

from ctframe.base.contracts import Kind
from ctframe.base.options import Options
from ctframe.registry.plugins import PLUGINS_ENV, Registry, qualified


def option_rows(options: Any, prefix: str = "") -> list[dict[str, Any]]:
    """One row per option; nested option groups (``[trainer.initial]``) become dotted names."""
    rows = []
    for name, field in options.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Options):
            rows.extend(option_rows(annotation, f"{prefix}{name}."))
            continue
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        plain = isinstance(default, str | int | float | bool | list | type(None))
        rows.append(
            {
                "name": f"{prefix}{name}",
                "type": getattr(annotation, "__name__", None) or str(annotation).replace("typing.", ""),
                "required": field.is_required(),
                "default": default if plain else str(default),
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
    # Every plugin problem, one line each: "component" is null when the whole plugin failed, and names
    # the one refused component when the plugin shares that name with another plugin.
    broken = [
        {"plugin": p.name, "package": p.package, "version": p.version, "component": None, "error": p.error}
        for p in registry.broken()
    ]
    for (clash_kind, name), plugins in sorted(registry.clashes.items()):
        for plugin in plugins:
            info = registry.plugins[plugin]
            others = [p for p in plugins if p != plugin]
            owners = f"plugin{'s' if len(others) > 1 else ''} {' and '.join(repr(p) for p in others)}"
            error = (
                f"{clash_kind} {name!r} is also registered by {owners}; recipes naming it bare are refused "
                f"(name this one {qualified(plugin, name)!r}, or exclude one with {PLUGINS_ENV})"
            )
            broken.append(
                {
                    "plugin": plugin,
                    "package": info.package,
                    "version": info.version,
                    "component": f"{clash_kind} {name}",
                    "error": error,
                }
            )
    # A name a built-in keeps although another plugin registers it too: a warning, nothing is refused.
    return {"components": components, "broken": broken, "warnings": registry.warnings()}

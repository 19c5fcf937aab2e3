"""JSON Schema for recipes, assembled from the installed plugins' option schemas."""

from __future__ import annotations

from typing import Any

from ctframe.base.contracts import Component, Kind
from ctframe.registry.plugins import Registry
from ctframe.registry.recipe import COMPONENT_KEY, COMPONENT_SECTIONS
from ctframe.registry.settings import EvaluationSettings, RunSettings

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _rename_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                f"#/$defs/{prefix}{value.rsplit('/', 1)[-1]}"
                if key == "$ref" and isinstance(value, str)
                else _rename_refs(value, prefix)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(item, prefix) for item in node]
    return node


def _options_schema(model: Any, prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A model's schema with its ``$defs`` hoisted into ``defs`` under a unique prefix."""
    schema = model.model_json_schema(mode="validation")
    for name, definition in schema.pop("$defs", {}).items():
        defs[f"{prefix}{name}"] = _rename_refs(definition, prefix)
    return _rename_refs(schema, prefix)


def _component_schema(component: Component, defs: dict[str, Any]) -> dict[str, Any]:
    schema = _options_schema(component.options, f"{component.kind}.{component.name}.", defs)
    properties = {
        COMPONENT_KEY: {"const": component.name, "description": component.description},
        **schema.get("properties", {}),
    }
    return {
        "type": "object",
        "title": f"{component.kind} {component.name}",
        "description": f"{component.description} (plugin {component.plugin})",
        "properties": properties,
        "required": [COMPONENT_KEY, *schema.get("required", [])],
        "additionalProperties": False,
    }


def _kind_schema(registry: Registry, kind: Kind, defs: dict[str, Any]) -> dict[str, Any]:
    variants = [
        _component_schema(c, defs) for c in sorted(registry.components[kind].values(), key=lambda c: c.name)
    ]
    return {"oneOf": variants} if variants else {"type": "object", "description": f"no {kind} installed"}


def recipe_json_schema(registry: Registry) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    properties: dict[str, Any] = {"run": _options_schema(RunSettings, "run.", defs)}
    for kind_spec in COMPONENT_SECTIONS:
        kind = Kind(kind_spec.name)
        one = _kind_schema(registry, kind, defs)
        if kind_spec.many:  # a list of component names or tables
            names = sorted(registry.components[kind])
            item = {"anyOf": [{"enum": names} if names else {"type": "string"}, one]}
            properties[str(kind_spec.section)] = {"type": "array", "minItems": 1, "items": item}
        else:
            properties[str(kind_spec.section)] = one
    properties["evaluation"] = _options_schema(EvaluationSettings, "evaluation.", defs)
    return {
        "$schema": DRAFT,
        "title": "ctframe recipe",
        "type": "object",
        "properties": properties,
        "required": [str(k.section) for k in COMPONENT_SECTIONS],
        "additionalProperties": False,
        "$defs": defs,
    }

"""The toy recipe, tests/toy/toy.toml, with changes: tests that need a variant say only how it differs.

``toy_recipe_text(dataset={"samples": 16}, evaluation={"bootstrap": 0})`` is toy.toml with 16 samples
and no bootstrap; ``toy_recipe_text(SMALL, head={...})`` applies the changes of ``SMALL`` first. The
text keeps toy.toml's layout (top-level keys, then one ``[table]`` per section, arrays on one line), so
a test may still edit a line of it.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TOY_TOML = Path(__file__).with_name("toy.toml")


def toy_recipe_text(*layers: Mapping[str, Any], **changes: Any) -> str:
    """toy.toml with ``layers`` and then ``changes`` applied, each keyed by top-level key (``metrics``,
    ``run``, ``dataset``, ...).

    A table merges into the recipe's, key by key and into sub-tables, unless it names another
    ``component``: then it replaces the recipe's (whose options mean nothing to another component).
    Any other value replaces the recipe's; ``None`` removes a key or a whole section.
    """
    recipe = tomllib.loads(TOY_TOML.read_text())
    for change in (*layers, changes):
        recipe = _changed(recipe, dict(change))
    return _dumps(recipe)


def _changed(base: Any, change: Any) -> Any:
    if not (isinstance(base, dict) and isinstance(change, dict)):
        return change
    component = change.get("component")
    merged = {} if isinstance(component, str) and component != base.get("component") else dict(base)
    for key, value in change.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _changed(merged.get(key), value)
    return merged


def _dumps(recipe: dict[str, Any]) -> str:
    lines = [f"{key} = {_inline(value)}" for key, value in recipe.items() if not isinstance(value, dict)]
    for key, value in recipe.items():
        if isinstance(value, dict):
            lines += _table(key, value)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(name: str, table: dict[str, Any]) -> list[str]:
    lines = ["", f"[{name}]"]
    lines += [f"{key} = {_inline(value)}" for key, value in table.items() if not isinstance(value, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += _table(f"{name}.{key}", value)
    return lines


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str | os.PathLike):
        return json.dumps(os.fspath(value))  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_inline(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")

"""TOML recipes: read, override, validate against the installed plugins' option schemas.

Everything here runs before any work starts, and every failure is a one-line
:class:`~ctframe.base.errors.RecipeError` naming the recipe file, the section and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctframe.base.contracts import Component, Kind
from ctframe.base.errors import RecipeError
from ctframe.base.kinds import KindSpec, recipe_kinds
from ctframe.base.options import Options
from ctframe.registry.plugins import QUALIFIER, Registry, get_registry, qualified
from ctframe.registry.settings import EvaluationSettings, RunSettings
from ctframe.registry.validation import suggest, validate_options

COMPONENT_KEY = "component"
COMPONENT_SECTIONS: tuple[KindSpec, ...] = recipe_kinds()
"""The recipe sections that name components, in recipe order (from ``ctframe.base.kinds.KINDS``)."""
TOP_LEVEL_KEYS = ("run", *(kind.section for kind in COMPONENT_SECTIONS), "evaluation")


@dataclass(frozen=True)
class ComponentConfig:
    """A validated component section: which component, with which options."""

    section: str
    component: Component
    options: Options

    def to_dict(self) -> dict[str, Any]:
        return {COMPONENT_KEY: self.component.name, **self.options.model_dump(mode="json")}


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. ``to_dict()`` is the resolved recipe (defaults filled, paths absolute).

    Each component section is an attribute named like its recipe key: ``recipe.dataset`` is a
    :class:`ComponentConfig`, ``recipe.metrics`` a tuple of them (a kind with ``many=True``).
    """

    path: Path
    run: RunSettings
    sections: Mapping[str, ComponentConfig | tuple[ComponentConfig, ...]]
    """Recipe key -> its validated component(s), for every section of ``COMPONENT_SECTIONS``."""
    evaluation: Options

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails; read __dict__ so a half-built object cannot recurse.
        sections = self.__dict__.get("sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def stem(self) -> str:
        return self.run.name or self.path.stem

    def components(self) -> list[ComponentConfig]:
        found: list[ComponentConfig] = []
        for kind in COMPONENT_SECTIONS:
            value = self.sections[kind.section]
            found.extend(value if kind.many else [value])
        return found

    def to_dict(self) -> dict[str, Any]:
        # Lists first: in TOML a top-level array must come before the first table.
        resolved: dict[str, Any] = {
            kind.section: [m.to_dict() for m in self.sections[kind.section]]
            for kind in COMPONENT_SECTIONS
            if kind.many
        }
        resolved["run"] = self.run.model_dump(mode="json")
        for kind in COMPONENT_SECTIONS:
            if not kind.many:
                resolved[kind.section] = self.sections[kind.section].to_dict()
        resolved["evaluation"] = self.evaluation.model_dump(mode="json")
        return _drop_none(resolved)


def _drop_none(value: Any) -> Any:
    """TOML has no null: an unset optional value is simply left out."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


# ---------------------------------------------------------------- reading and overrides


def read_recipe_text(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        hint = "it is a folder; name a .toml file" if path.is_dir() else "check the path"
        raise RecipeError(f"{path}: recipe file not found ({hint})")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: cannot read the recipe: {error}") from None


def read_recipe_file(path: Path, text: str | None = None) -> dict[str, Any]:
    """The recipe at ``path`` as a mapping; ``text``, when given, is its content read earlier."""
    path = Path(path)
    text = read_recipe_text(path) if text is None else text
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: malformed TOML: {error}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise RecipeError(f"{path}: malformed TOML: arrays or tables nested too deeply") from None


def _override_value(raw: str) -> Any:
    """A TOML literal for arrays, tables and quoted strings; otherwise the raw text, which the
    option's schema then types (so ``--set run.name=2024`` stays a string)."""
    try:
        parsed = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw
    return parsed if isinstance(parsed, list | dict | str) else raw


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], path: Path) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (any depth) to the raw recipe mapping."""
    for override in overrides:
        key, sep, raw = override.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or not all(parts):
            raise RecipeError(f"{path}: --set expects section.key=value, got {override!r}")
        if parts[0] not in TOP_LEVEL_KEYS:
            raise RecipeError(
                f"{path}: --set {override!r}: unknown section {parts[0]!r}{suggest(parts[0], TOP_LEVEL_KEYS)}"
            )
        target = data
        for part in parts[:-1]:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"{path}: --set {override!r}: {part!r} is not a table")
            target = child
        target[parts[-1]] = _override_value(raw.strip())
    return data


def _unknown_component_message(registry: Registry, kind: Kind, name: str) -> str:
    clash = registry.clash_message(kind, name)
    if clash:
        return clash
    owner = registry.dropped.get((kind, name))
    if owner:
        return f"{kind} {name!r} comes from plugin {owner!r}, which failed: {registry.plugins[owner].error}"
    available = registry.names(kind) + registry.qualified_names(kind)
    message = f"unknown {kind} component {name!r}{suggest(name, available)}"
    message += f"; available: {', '.join(available) if available else 'none installed'}"
    broken = registry.broken()
    if broken:
        message += "; not loaded: " + ", ".join(f"plugin {p.name!r} ({p.error})" for p in broken)
    return message


def component_config(
    registry: Registry, kind: Kind, section: str, values: Any, path: Path
) -> ComponentConfig:
    """One validated component section of the recipe at ``path``: ``[dataset]``, a metrics entry, ..."""
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: [{section}] must be a table with a '{COMPONENT_KEY}' key")
    values = dict(values)
    name = values.pop(COMPONENT_KEY, None)
    if name is None:
        available = ", ".join(registry.names(kind)) or "none installed"
        raise RecipeError(f"{path}: [{section}] {COMPONENT_KEY}: missing; name one of: {available}")
    if not isinstance(name, str):
        raise RecipeError(f"{path}: [{section}] {COMPONENT_KEY}: expected a string, got {name!r}")
    component = registry.get(kind, name)
    if component is None:
        raise RecipeError(
            f"{path}: [{section}] {COMPONENT_KEY}: {_unknown_component_message(registry, kind, name)}"
        )
    return ComponentConfig(section, component, validate_options(component.options, values, path, section))


def _list_entries(kind: KindSpec, raw: Any, path: Path, registry: Registry) -> list[dict[str, Any]]:
    """A list section (``metrics = [...]``): each entry a component name or a table."""
    section = kind.section
    if raw is None:
        example = ", ".join(f'"{n}"' for n in registry.names(Kind(kind.name))[:2]) or '"name"'
        raise RecipeError(
            f"{path}: {section}: missing; add e.g. {section} = [{example}] before the first table"
        )
    if not isinstance(raw, list) or not raw:
        raise RecipeError(
            f"{path}: {section}: expected a non-empty list of {kind.name} names or tables, got {raw!r}"
        )
    entries = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            entries.append({COMPONENT_KEY: item})
        elif isinstance(item, dict):
            entries.append(item)
        else:
            raise RecipeError(
                f"{path}: {section}[{index}]: expected a {kind.name} name or a table, got {item!r}"
            )
    return entries


def _section(kind: KindSpec, data: Mapping[str, Any], path: Path, registry: Registry) -> Any:
    """One validated component section: a ComponentConfig, or a tuple of them for a list section."""
    section = str(kind.section)
    if not kind.many:
        return component_config(registry, Kind(kind.name), section, data[section], path)
    configs = tuple(
        component_config(registry, Kind(kind.name), f"{section}[{i}]", entry, path)
        for i, entry in enumerate(_list_entries(kind, data.get(section), path, registry))
    )
    # one component named twice, bare and qualified ("accuracy", "classification_metrics:accuracy")
    names = [qualified(c.component.plugin, c.component.name.rpartition(QUALIFIER)[2]) for c in configs]
    duplicates = sorted({c.component.name for c, n in zip(configs, names, strict=True) if names.count(n) > 1})
    if duplicates:
        raise RecipeError(
            f"{path}: {section}: {', '.join(duplicates)} listed twice; keep one entry per {kind.name}"
        )
    return configs


def validate_recipe(data: Mapping[str, Any], path: Path, registry: Registry) -> Recipe:
    """Validate a raw recipe mapping (already overridden) into a :class:`Recipe`."""
    path = Path(path)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise RecipeError(
                f"{path}: unknown top-level key {key!r}{suggest(key, TOP_LEVEL_KEYS)} "
                f"(expected: {', '.join(TOP_LEVEL_KEYS)})"
            )
    for kind in COMPONENT_SECTIONS:
        if not kind.many and kind.section not in data:
            raise RecipeError(f"{path}: missing section [{kind.section}]")
    run_values = data.get("run", {})
    if not isinstance(run_values, dict):
        raise RecipeError(f"{path}: [run] must be a table")
    run = validate_options(RunSettings, run_values, path, "run")
    sections = {str(kind.section): _section(kind, data, path, registry) for kind in COMPONENT_SECTIONS}
    evaluation_values = data.get("evaluation", {})
    if not isinstance(evaluation_values, dict):
        raise RecipeError(f"{path}: [evaluation] must be a table")
    evaluation = validate_options(EvaluationSettings, evaluation_values, path, "evaluation")
    return Recipe(
        path=path.absolute(),
        run=run.model_copy(update={"output": _expanded(run.output, path)}),
        sections=sections,
        evaluation=evaluation,
    )


def _expanded(output: Path, path: Path) -> Path:
    try:
        return output.expanduser().absolute()
    except RuntimeError:  # "~name" for a user this machine does not know
        raise RecipeError(
            f"{path}: [run] output: {output.parts[0]} names no known user's home folder; write the path out"
        ) from None


def load_recipe(
    path: Path, overrides: Sequence[str] = (), registry: Registry | None = None, text: str | None = None
) -> Recipe:
    """Read, override and validate a recipe file. Raises :class:`RecipeError` with one line.

    ``text`` is the recipe's content kept from earlier (``ctframe cv`` stores it): the file is then not
    read, and ``path`` only names the recipe and places its relative paths.
    """
    registry = get_registry() if registry is None else registry
    path = Path(path)
    data = apply_overrides(read_recipe_file(path, text), overrides, path)
    return validate_recipe(data, path, registry)

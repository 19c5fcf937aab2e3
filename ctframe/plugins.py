"""The plugin manager and the component registry built from it.

Built-in plugins and third-party packages load the same way: from the ``ctframe`` entry point
group. ``CTFRAME_PLUGINS`` (comma-separated entry point names; empty for none) selects which load.
A plugin that fails to import or register is recorded as broken and the others carry on.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from ctframe import hookspecs
from ctframe.contracts import Component, Kind
from ctframe.errors import PluginError
from ctframe.options import Options

ENTRY_POINT_GROUP = "ctframe"
PLUGINS_ENV = "CTFRAME_PLUGINS"

REGISTER_HOOKS: dict[Kind, str] = {
    Kind.DATASET: "ctframe_register_datasets",
    Kind.BACKBONE: "ctframe_register_backbones",
    Kind.HEAD: "ctframe_register_heads",
    Kind.TRAINER: "ctframe_register_trainers",
    Kind.METRIC: "ctframe_register_metrics",
}


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as ``list-plugins`` shows it."""

    name: str
    package: str
    version: str
    error: str | None = None
    """Why it failed to load or register; ``None`` when healthy."""


@dataclass
class Registry:
    """Components by kind and name, plus every plugin seen (healthy or broken)."""

    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    components: dict[Kind, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in Kind})

    def get(self, kind: Kind, name: str) -> Component | None:
        return self.components[kind].get(name)

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.components[kind])

    def broken(self) -> list[PluginInfo]:
        return [info for info in self.plugins.values() if info.error]

    def all_components(self) -> list[Component]:
        return [c for kind in Kind for c in sorted(self.components[kind].values(), key=lambda c: c.name)]


def _selected(names: Iterable[str], selection: str | None) -> set[str]:
    if selection is None:
        return set(names)
    return {name.strip() for name in selection.split(",") if name.strip()}


def _describe_exception(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _load_entry_points(
    manager: pluggy.PluginManager, plugins: dict[str, PluginInfo], selection: str | None
) -> None:
    entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    wanted = _selected((ep.name for ep in entry_points), selection)
    for entry_point in sorted(entry_points, key=lambda ep: ep.name):
        if entry_point.name not in wanted or entry_point.name in plugins:
            continue
        dist = entry_point.dist
        package = dist.name if dist else entry_point.value.split(":")[0]
        version = dist.version if dist else "?"
        try:
            module = entry_point.load()
            manager.register(module, name=entry_point.name)
        except Exception as error:  # a broken plugin must not stop the others
            plugins[entry_point.name] = PluginInfo(
                entry_point.name, package, version, _describe_exception(error)
            )
            continue
        plugins[entry_point.name] = PluginInfo(entry_point.name, package, version)


def build_plugin_manager(
    extra: Iterable[ModuleType | object] = (),
    selection: str | None = None,
    use_environment: bool = True,
) -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """Add the hook specs, load the selected entry points (and ``extra`` objects), check hooks.

    ``selection`` defaults to ``$CTFRAME_PLUGINS`` when ``use_environment`` is true.
    """
    if selection is None and use_environment:
        selection = os.environ.get(PLUGINS_ENV)
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    plugins: dict[str, PluginInfo] = {}
    _load_entry_points(manager, plugins, selection)
    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        manager.register(plugin, name=name)
        plugins[name] = PluginInfo(name, name, "local")
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        name = manager.get_name(error.plugin) or repr(error.plugin)
        raise PluginError(f"plugin {name!r} implements an unknown hook: {error}") from None
    return manager, plugins


def _make_register(registry: Registry, kind: Kind, plugin: str) -> Callable[..., None]:
    def register(
        name: str,
        factory: Callable[..., Any],
        options: type[Options],
        description: str,
        check: Callable[..., None] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"plugin {plugin!r} registered {kind} name {name!r}; use a Python identifier")
        if not callable(factory):
            raise PluginError(
                f"plugin {plugin!r} registered {kind} {name!r} with a factory that is not callable"
            )
        if not (isinstance(options, type) and issubclass(options, Options)):
            raise PluginError(
                f"plugin {plugin!r} registered {kind} {name!r} with options that are not a ctframe.Options "
                "class"
            )
        existing = registry.components[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"{kind} {name!r} is registered by two plugins: {existing.plugin!r} and {plugin!r}; "
                f"uninstall one or exclude it with {PLUGINS_ENV}"
            )
        summary = " ".join(description.split())
        if check is not None and not callable(check):
            raise PluginError(
                f"plugin {plugin!r} registered {kind} {name!r} with a check that is not callable"
            )
        registry.components[kind][name] = Component(kind, name, factory, options, summary, plugin, check)

    return register


def build_registry(
    extra: Iterable[ModuleType | object] = (),
    selection: str | None = None,
    use_environment: bool = True,
) -> Registry:
    """Build the manager and collect every component the plugins register.

    A plugin whose registration hook raises is marked broken (its partial registrations are
    dropped) and the others carry on; a name clash between two plugins is a :class:`PluginError`.
    """
    manager, plugins = build_plugin_manager(extra, selection, use_environment)
    registry = Registry(manager, plugins)
    for kind, hook_name in REGISTER_HOOKS.items():
        hook = getattr(manager.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin = impl.plugin_name
            if registry.plugins.get(plugin) and registry.plugins[plugin].error:
                continue
            before = dict(registry.components[kind])
            try:
                kwargs = {"register": _make_register(registry, kind, plugin)}
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except PluginError:
                raise
            except Exception as error:
                registry.components[kind] = before
                info = registry.plugins.get(plugin, PluginInfo(plugin, plugin, "?"))
                registry.plugins[plugin] = PluginInfo(
                    info.name, info.package, info.version, _describe_exception(error)
                )
    for plugin, info in registry.plugins.items():  # drop everything a broken plugin registered
        if info.error:
            for kind in Kind:
                registry.components[kind] = {
                    n: c for n, c in registry.components[kind].items() if c.plugin != plugin
                }
    return registry


_cached: dict[str | None, Registry] = {}


def get_registry() -> Registry:
    """The registry for the current ``$CTFRAME_PLUGINS``, built once per process."""
    key = os.environ.get(PLUGINS_ENV)
    if key not in _cached:
        _cached[key] = build_registry()
    return _cached[key]


def clear_registry_cache() -> None:
    _cached.clear()

"""The plugin manager and the component registry built from it.

Built-in plugins and third-party packages load the same way: from the ``ctframe`` entry point
group. ``CTFRAME_PLUGINS`` (comma-separated entry point names; empty for none) selects which load.

Plugins are isolated from each other. One that fails to import, implements an unknown hook or raises
in any of its registration hooks (commands included) is recorded as broken, its registrations are
dropped and it is unregistered, so none of its hooks runs again; the others carry on. A component
name that two plugins register is a clash, refused only for the recipes that name it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import pluggy
import typer
import typer.main

from ctframe.base.contracts import Component, Kind
from ctframe.base.errors import PluginError
from ctframe.base.kinds import KINDS
from ctframe.base.options import Options
from ctframe.registry.manager import (
    PLUGIN_FAILURES,
    PLUGINS_ENV,
    PluginInfo,
    build_plugin_manager,
    describe_exception,
)

REGISTER_HOOKS: dict[Kind, str] = {Kind(kind.name): kind.hook for kind in KINDS}


@dataclass
class Registry:
    """Components by kind and name, plus every plugin seen (healthy or broken)."""

    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    components: dict[Kind, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in Kind})
    clashes: dict[tuple[Kind, str], tuple[str, ...]] = field(default_factory=dict)
    """Names registered by several healthy plugins, with those plugins: left out, never guessed."""
    dropped: dict[tuple[Kind, str], str] = field(default_factory=dict)
    """Names registered by a plugin that then broke, with that plugin (so errors can name it)."""
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Healthy plugins' commands: plugin -> command name -> click command."""

    def get(self, kind: Kind, name: str) -> Component | None:
        return self.components[kind].get(name)

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.components[kind])

    def broken(self) -> list[PluginInfo]:
        return [info for info in self.plugins.values() if info.error]

    def all_components(self) -> list[Component]:
        return [c for kind in Kind for c in sorted(self.components[kind].values(), key=lambda c: c.name)]

    def clash_message(self, kind: Kind, name: str) -> str | None:
        """One line naming the plugins that all register ``name``; ``None`` when it does not clash."""
        plugins = self.clashes.get((kind, name))
        if not plugins:
            return None
        return (
            f"{kind} {name!r} is registered by {several(plugins)}; "
            f"uninstall one or exclude it with {PLUGINS_ENV}"
        )


def several(plugins: Collection[str]) -> str:
    quoted = [repr(p) for p in sorted(plugins)]
    count = "two" if len(quoted) == 2 else str(len(quoted))
    return f"{count} plugins: {', '.join(quoted[:-1])} and {quoted[-1]}"


def _make_register(kind: Kind, plugin: str, registered: list[Component]) -> Callable[..., None]:
    def register(
        name: str,
        factory: Callable[..., Any],
        options: type[Options],
        description: str,
        check: Callable[..., None] | None = None,
        reader: Callable[..., Any] | None = None,
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
        if check is not None and not callable(check):
            raise PluginError(
                f"plugin {plugin!r} registered {kind} {name!r} with a check that is not callable"
            )
        if reader is not None and (kind is not Kind.DATASET or not callable(reader)):
            raise PluginError(
                f"plugin {plugin!r} registered {kind} {name!r} with a reader; only datasets take one"
            )
        if any(c.kind == kind and c.name == name for c in registered):
            raise PluginError(f"plugin {plugin!r} registered {kind} {name!r} twice")
        summary = " ".join(str(description).split())
        registered.append(Component(kind, name, factory, options, summary, plugin, check, reader))

    return register


def _call(impl: pluggy.HookImpl, **arguments: Any) -> None:
    # Implementations may take fewer arguments than the spec names.
    impl.function(**{name: arguments[name] for name in impl.argnames})


def _collect_commands(
    manager: pluggy.PluginManager, plugins: dict[str, PluginInfo], fail: Callable[[str, BaseException], None]
) -> dict[str, dict[str, Any]]:
    """Each healthy plugin's commands, registered on a throwaway app of its own.

    A plugin never sees the real command line, so it cannot replace a core command or the root
    callback; one that raises, or whose commands typer cannot build, is marked broken here.
    """
    impls = [
        impl
        for impl in manager.hook.ctframe_register_commands.get_hookimpls()
        if not plugins[impl.plugin_name].error
    ]
    if not impls:
        return {}

    commands: dict[str, dict[str, Any]] = {}
    for impl in impls:
        cli = typer.Typer(add_completion=False, rich_markup_mode=None)  # help rendered like ctframe's own
        try:
            _call(impl, cli=cli)
            built = dict(typer.main.get_group(cli).commands)
        except PLUGIN_FAILURES as error:
            fail(impl.plugin_name, error)
            continue
        commands.setdefault(impl.plugin_name, {}).update(built)
    return commands


def build_registry(
    extra: Iterable[ModuleType | object] = (),
    selection: str | None = None,
    use_environment: bool = True,
) -> Registry:
    """Build the manager and collect every component and command the plugins register.

    A plugin whose hook raises is marked broken: everything it registered is dropped and it is
    unregistered from the manager, so its audit and command hooks are never called. A name that
    several healthy plugins register is recorded in ``clashes`` and left out.
    """
    manager, plugins = build_plugin_manager(extra, selection, use_environment)
    registry = Registry(manager, plugins)
    registered: dict[str, list[Component]] = {}

    def fail(plugin: str, error: BaseException) -> None:
        plugins[plugin] = replace(plugins[plugin], error=describe_exception(error))

    for kind, hook_name in REGISTER_HOOKS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name
            if plugins[plugin].error:
                continue
            try:
                _call(impl, register=_make_register(kind, plugin, registered.setdefault(plugin, [])))
            except PLUGIN_FAILURES as error:
                fail(plugin, error)
    registry.commands = _collect_commands(manager, plugins, fail)

    owners: dict[tuple[Kind, str], list[Component]] = {}
    for plugin, components in registered.items():
        for component in components:
            key = (component.kind, component.name)
            if plugins[plugin].error:
                registry.dropped[key] = plugin
            else:
                owners.setdefault(key, []).append(component)
    for (kind, name), components in owners.items():
        if len(components) == 1:
            registry.components[kind][name] = components[0]
        else:
            registry.clashes[(kind, name)] = tuple(sorted(c.plugin for c in components))
    for name, info in plugins.items():
        if info.error and manager.get_plugin(name) is not None:
            manager.unregister(name=name)
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

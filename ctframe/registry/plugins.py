"""The plugin manager and the component registry built from it.

Built-in plugins and third-party packages load the same way: from the ``ctframe`` entry point
group. ``CTFRAME_PLUGINS`` (comma-separated entry point names; empty for none) selects which load.

Plugins are isolated from each other. One that fails to import, implements an unknown hook or raises
in any of its registration hooks (commands included) is recorded as broken, its registrations are
dropped and it is unregistered, so none of its hooks runs again; the others carry on.

A component name that several plugins register is a clash. When one of them is built in, the built-in
keeps the name and the others are reachable qualified by plugin (``"myplugin:accuracy"``), with a
warning naming both. Otherwise no plugin gets the bare name: every one is reachable qualified, and only
the recipes that name it bare are refused, in one line naming the plugins and the qualified names.
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
QUALIFIER = ":"
"""Separates a plugin's name from its component's: ``component = "myplugin:accuracy"``."""


def qualified(plugin: str, name: str) -> str:
    return f"{plugin}{QUALIFIER}{name}"


@dataclass
class Registry:
    """Components by kind and name, plus every plugin seen (healthy or broken)."""

    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    components: dict[Kind, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in Kind})
    clashes: dict[tuple[Kind, str], tuple[str, ...]] = field(default_factory=dict)
    """Names registered by several healthy plugins, none built in, with those plugins: the bare name is
    left out, never guessed."""
    shadowed: dict[tuple[Kind, str], tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    """Names a built-in plugin keeps although other plugins register them too: (built-in, others)."""
    qualified: dict[Kind, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in Kind})
    """Components reachable only as ``plugin:name`` (their bare name clashes); ``name`` is that form."""
    dropped: dict[tuple[Kind, str], str] = field(default_factory=dict)
    """Names registered by a plugin that then broke, with that plugin (so errors can name it)."""
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Healthy plugins' commands: plugin -> command name -> click command."""

    def get(self, kind: Kind, name: str) -> Component | None:
        """The component a recipe means by ``name``: a bare name, or ``plugin:name`` for any plugin's."""
        if QUALIFIER not in name:
            return self.components[kind].get(name)
        plugin, _, bare = name.partition(QUALIFIER)
        owner = self.components[kind].get(bare)
        if owner is not None and owner.plugin == plugin:  # named as written, so it stays that plugin's
            return replace(owner, name=name)
        return self.qualified[kind].get(name)

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.components[kind])

    def qualified_names(self, kind: Kind) -> list[str]:
        """The names only reachable qualified (``plugin:name``), because their bare name clashes."""
        return sorted(self.qualified[kind])

    def broken(self) -> list[PluginInfo]:
        return [info for info in self.plugins.values() if info.error]

    def all_components(self) -> list[Component]:
        """Every usable component: each bare name, then each ``plugin:name`` of a clashing one."""
        ordered = [c for kind in Kind for c in sorted(self.components[kind].values(), key=lambda c: c.name)]
        return ordered + [c for kind in Kind for _, c in sorted(self.qualified[kind].items())]

    def clash_message(self, kind: Kind, name: str) -> str | None:
        """One line naming the plugins that all register ``name``; ``None`` when it does not clash."""
        plugins = self.clashes.get((kind, name))
        if not plugins:
            return None
        forms = " or ".join(repr(qualified(plugin, name)) for plugin in sorted(plugins))
        return (
            f"{kind} {name!r} is registered by {several(plugins)}; name one of them as {forms}, "
            f"or exclude one with {PLUGINS_ENV}"
        )

    def warnings(self) -> list[str]:
        """One line per plugin whose component name a built-in plugin keeps."""
        return [
            f"{kind} {name!r} is registered by built-in plugin {built_in!r} and by plugin {other!r}; "
            f"the built-in keeps the name, name plugin {other!r}'s as {qualified(other, name)!r}"
            for (kind, name), (built_in, others) in sorted(self.shadowed.items())
            for other in others
        ]


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
    several healthy plugins register goes to the one built-in among them (``shadowed``) or to none
    (``clashes``); each other one is reachable as ``plugin:name``.
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
        _settle_name(registry, kind, name, components)
    for name, info in plugins.items():
        if info.error and manager.get_plugin(name) is not None:
            manager.unregister(name=name)
    return registry


def _settle_name(registry: Registry, kind: Kind, name: str, components: list[Component]) -> None:
    """Who gets ``name``: its one plugin; else the one built-in plugin among several, the others then
    reachable qualified; else nobody, every one reachable qualified."""
    if len(components) == 1:
        registry.components[kind][name] = components[0]
        return
    built_in = [c for c in components if registry.plugins[c.plugin].built_in]
    keeper = built_in[0] if len(built_in) == 1 else None
    others = sorted((c for c in components if c is not keeper), key=lambda c: c.plugin)
    for component in others:
        form = qualified(component.plugin, name)
        registry.qualified[kind][form] = replace(component, name=form)
    if keeper is None:
        registry.clashes[(kind, name)] = tuple(c.plugin for c in others)
    else:
        registry.components[kind][name] = keeper
        registry.shadowed[(kind, name)] = (keeper.plugin, tuple(c.plugin for c in others))


_cached: dict[str | None, Registry] = {}


def get_registry() -> Registry:
    """The registry for the current ``$CTFRAME_PLUGINS``, built once per process."""
    key = os.environ.get(PLUGINS_ENV)
    if key not in _cached:
        _cached[key] = build_registry()
    return _cached[key]


def clear_registry_cache() -> None:
    _cached.clear()

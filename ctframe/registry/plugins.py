"""The plugin manager and the component registry built from it.

Built-in plugins and third-party packages load the same way: from the ``ctframe`` entry point
group. ``CTFRAME_PLUGINS`` (comma-separated entry point names; empty for none) selects which load.

Plugins are isolated from each other. One that fails to import, implements an unknown hook or raises
in any of its registration hooks (commands included) is recorded as broken, its registrations are
dropped and it is unregistered, so none of its hooks runs again; the others carry on. A component
name that two plugins register is a clash, refused only for the recipes that name it.
"""

from __future__ import annotations

import difflib
import importlib
import os
import traceback
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy
import typer
import typer.main

from ctframe.base import hookspecs
from ctframe.base.contracts import Component, Kind
from ctframe.base.errors import CtframeError, PluginError
from ctframe.base.kinds import KINDS
from ctframe.base.options import Options

ENTRY_POINT_GROUP = "ctframe"
PLUGINS_ENV = "CTFRAME_PLUGINS"
CORE_PLUGINS = ("ctframe.report.core_sections",)
"""The core's own hook implementations: registered like plugins, first and whatever the selection."""

REGISTER_HOOKS: dict[Kind, str] = {Kind(kind.name): kind.hook for kind in KINDS}

# What plugin code may raise without stopping ctframe (a stray sys.exit() included); Ctrl-C still stops it.
PLUGIN_FAILURES = (Exception, SystemExit)


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as ``list-plugins`` shows it."""

    name: str
    package: str
    version: str
    error: str | None = None
    """Why it failed to load or register (one line); ``None`` when healthy."""


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


def _selected(names: Iterable[str], selection: str | None) -> set[str]:
    if selection is None:
        return set(names)
    return {name.strip() for name in selection.split(",") if name.strip()}


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _describe_exception(error: BaseException) -> str:
    if isinstance(error, CtframeError):  # already written for users
        return _one_line(error)
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return _one_line(f"{type(error).__name__}: {error}") + where


def _unknown_hooks(manager: pluggy.PluginManager, plugin: object) -> list[str]:
    """``check_pending()`` for one plugin: the hooks it implements that no spec declares."""
    return sorted(
        caller.name
        for caller in manager.get_hookcallers(plugin) or ()
        if not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    )


def _unknown_hook_message(names: list[str]) -> str:
    known = [name for name in dir(hookspecs) if name.startswith("ctframe_")]
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"implements unknown hook {', '.join(parts)}"


def _add_plugin(
    manager: pluggy.PluginManager,
    plugins: dict[str, PluginInfo],
    name: str,
    package: str,
    version: str,
    load: Callable[[], object],
) -> None:
    """Load and register one plugin; any failure marks it broken and leaves the manager without it."""
    if name in plugins:  # two packages, one entry point name: keep the first, report the second
        key = f"{name} ({package})"
        taken = f"plugin name {name!r} is already used by {plugins[name].package}"
        plugins[key] = PluginInfo(key, package, version, f"{taken}; rename the entry point")
        return
    try:
        plugin = load()
        if manager.is_registered(plugin):
            raise PluginError(f"the same module is already loaded as plugin {manager.get_name(plugin)!r}")
        try:
            manager.register(plugin, name=name)
            unknown = _unknown_hooks(manager, plugin)
            if unknown:
                raise PluginError(_unknown_hook_message(unknown))
        except BaseException:
            if manager.get_plugin(name) is plugin:  # older pluggy can leave half a registration behind
                manager.unregister(name=name)
            raise
    except PLUGIN_FAILURES as error:
        plugins[name] = PluginInfo(name, package, version, _describe_exception(error))
        return
    plugins[name] = PluginInfo(name, package, version)


def _load_entry_points(
    manager: pluggy.PluginManager, plugins: dict[str, PluginInfo], selection: str | None
) -> None:
    entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    wanted = _selected((ep.name for ep in entry_points), selection)
    for entry_point in sorted(entry_points, key=lambda ep: ep.name):
        if entry_point.name not in wanted:
            continue
        dist = entry_point.dist
        package = dist.name if dist else entry_point.value.split(":")[0]
        version = dist.version if dist else "?"
        _add_plugin(manager, plugins, entry_point.name, package, version, entry_point.load)


def build_plugin_manager(
    extra: Iterable[ModuleType | object] = (),
    selection: str | None = None,
    use_environment: bool = True,
) -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """Add the hook specs, then load and check the selected entry points (and ``extra`` objects).

    Hooks are checked plugin by plugin as each registers, so a misspelled hook marks only that
    plugin broken. ``selection`` defaults to ``$CTFRAME_PLUGINS`` when ``use_environment`` is true.
    """
    if selection is None and use_environment:
        selection = os.environ.get(PLUGINS_ENV)
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for module in CORE_PLUGINS:  # part of ctframe: not listed, never broken, not selectable
        manager.register(importlib.import_module(module), name=module)
    plugins: dict[str, PluginInfo] = {}
    _load_entry_points(manager, plugins, selection)
    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        _add_plugin(manager, plugins, name, name, "local", lambda plugin=plugin: plugin)
    return manager, plugins


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
        plugins[plugin] = replace(plugins[plugin], error=_describe_exception(error))

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

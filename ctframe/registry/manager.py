"""The pluggy plugin manager: hook specs, the core's own hook modules, and the plugins found through the
``ctframe`` entry point group (``CTFRAME_PLUGINS`` selects which load). A plugin that fails to import or
implements an unknown hook is recorded as broken; the others carry on."""

from __future__ import annotations

import difflib
import importlib
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

import pluggy

from ctframe.base import hookspecs
from ctframe.base.errors import CtframeError, PluginError

ENTRY_POINT_GROUP = "ctframe"
PLUGINS_ENV = "CTFRAME_PLUGINS"
BUILT_IN_DISTRIBUTION = "ctframe"
"""The distribution whose entry points are the built-in plugins (``plugins/ctframe_*``): in a name clash
with a third-party plugin, the built-in keeps the name."""
CORE_PLUGINS = ("ctframe.report.core_sections",)
"""The core's own hook implementations: registered like plugins, first and whatever the selection."""

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
    built_in: bool = False
    """Installed by ctframe itself (an entry point of :data:`BUILT_IN_DISTRIBUTION`)."""


def _selected(names: Iterable[str], selection: str | None) -> set[str]:
    if selection is None:
        return set(names)
    return {name.strip() for name in selection.split(",") if name.strip()}


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def describe_exception(error: BaseException) -> str:
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
    built_in: bool = False,
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
        plugins[name] = PluginInfo(name, package, version, describe_exception(error), built_in)
        return
    plugins[name] = PluginInfo(name, package, version, built_in=built_in)


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
        built_in = _canonical(package) == BUILT_IN_DISTRIBUTION
        _add_plugin(manager, plugins, entry_point.name, package, version, entry_point.load, built_in)


def _canonical(distribution: str) -> str:
    return distribution.lower().replace("_", "-").replace(".", "-")


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

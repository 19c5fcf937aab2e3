"""Commands plugins add to the ``ctframe`` command line (``ctframe_register_commands``).

The registry collects each plugin's commands on an app of its own; here they join the real command line,
never under a core command's name and never when two plugins claim one name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from typer.core import TyperGroup

from ctframe.registry.plugins import PLUGINS_ENV, Registry, get_registry, several


def plugin_commands(registry: Registry, core: Collection[str]) -> tuple[dict[str, Any], list[str]]:
    """The plugin commands the command line may add, and one warning line per command refused.

    A core command's name is never given to a plugin, and a name two plugins add goes to neither.
    """
    owners: dict[str, list[str]] = {}
    for plugin, commands in sorted(registry.commands.items()):
        for name in commands:
            owners.setdefault(name, []).append(plugin)
    accepted: dict[str, Any] = {}
    warnings: list[str] = []
    for name, plugins in sorted(owners.items()):
        if name in core:
            warnings.extend(
                f"plugin {plugin!r}: command {name!r} would shadow the core command; ignored"
                for plugin in plugins
            )
        elif len(plugins) > 1:
            warnings.append(
                f"command {name!r} is added by {several(plugins)}; left out "
                f"(uninstall one or exclude it with {PLUGINS_ENV})"
            )
        else:
            accepted[name] = registry.commands[plugins[0]][name]
    return accepted, warnings


def plugin_command_group(warn: Callable[[str], None]) -> type:
    """A typer group class that adds plugin commands when the command line first looks one up.

    Deferred because ``--version`` exits while options are parsed, before any lookup: it never
    builds the registry, so no plugin can break it. ``warn`` gets each refused command's line, and each
    component name a built-in plugin keeps from another plugin (:meth:`Registry.warnings`), once.
    """

    class PluginCommandGroup(TyperGroup):
        _plugins_added = False

        def _add_plugin_commands(self) -> None:
            if self._plugins_added:
                return
            self._plugins_added = True
            registry = get_registry()
            accepted, warnings = plugin_commands(registry, core=set(self.commands))
            for line in registry.warnings() + warnings:  # component names a built-in keeps, too
                warn(line)
            for name, command in accepted.items():
                self.add_command(command, name)

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            self._add_plugin_commands()
            return super().get_command(ctx, cmd_name)

        def list_commands(self, ctx: Any) -> list[str]:
            self._add_plugin_commands()
            return super().list_commands(ctx)

    return PluginCommandGroup

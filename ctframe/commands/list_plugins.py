"""``ctframe list-plugins``: the installed components, and the plugins that failed to load."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ctframe.base.contracts import Kind
from ctframe.commands import shared
from ctframe.commands.shared import JsonOption, app


@app.command("list-plugins")
def list_plugins(
    kind: Annotated[Optional[Kind], typer.Option("--kind", help="only this kind")] = None,  # noqa: UP045
    as_json: JsonOption = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show each component's options")] = False,
) -> None:
    """List installed components (and plugins that failed to load)."""
    from ctframe.registry.listing import describe_plugins
    from ctframe.registry.plugins import get_registry

    listing = describe_plugins(get_registry(), kind, verbose)
    if as_json:
        print(json.dumps(listing, indent=2, default=str))
        return
    _print_tables(listing["components"], verbose)
    for broken in listing["broken"]:
        shared.err.print(
            f"plugin {broken['plugin']!r} ({broken['package']} {broken['version']}) failed: {broken['error']}"
        )


def _print_tables(components: list[dict[str, Any]], verbose: bool) -> None:
    table = Table("component", "kind", "plugin", "version", "description")
    for entry in components:
        plugin = (
            entry["plugin"]
            if entry["package"] == entry["plugin"]
            else f"{entry['plugin']} ({entry['package']})"
        )
        table.add_row(entry["component"], entry["kind"], plugin, entry["version"], entry["description"])
    shared.out.print(table)
    for entry in components if verbose else ():
        options = Table("option", "default", "description", title=f"{entry['kind']} {entry['component']}")
        for option in entry["options"]:
            default = "(required)" if option["required"] else repr(option["default"])
            options.add_row(option["name"], default, option["description"])
        shared.out.print(options)

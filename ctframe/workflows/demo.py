"""Synthetic data sets offered by plugins (``ctframe_demo_data``), for ``ctframe demo-data``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ctframe.base.errors import CtframeError, PluginError
from ctframe.registry.plugins import QUALIFIER, Registry, get_registry, qualified
from ctframe.storage.files import write_json

HOOK = "ctframe_demo_data"
NAME = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class DemoFormat:
    name: str
    description: str
    write: Callable[..., str]
    plugin: str


def demo_formats(registry: Registry | None = None) -> tuple[dict[str, DemoFormat], list[str]]:
    """Every offered format by name, and one line per problem. A format several plugins offer goes to
    the one built-in among them, or to none; each other one is offered as ``plugin:format``. A plugin
    whose hook raises loses only its own formats."""
    registry = registry or get_registry()
    manager = registry.manager
    offered: dict[str, list[DemoFormat]] = {}
    problems: list[str] = []
    for impl in getattr(manager.hook, HOOK).get_hookimpls():
        found: list[DemoFormat] = []

        def register(
            name: str, write: Callable[..., str], description: str, _found=found, _impl=impl
        ) -> None:
            if not isinstance(name, str) or not NAME.fullmatch(name) or not callable(write):
                raise PluginError(f"demo format {name!r}: a lower-case name and a callable write are needed")
            _found.append(DemoFormat(name, " ".join(str(description).split()), write, _impl.plugin_name))

        try:
            arguments = {"register": register}
            impl.function(**{name: arguments[name] for name in impl.argnames})
        except Exception as error:  # a plugin's bug must not cost the others' formats
            problems.append(f"plugin {impl.plugin_name!r} failed: {' '.join(str(error).split())}")
            continue
        for demo in found:
            offered.setdefault(demo.name, []).append(demo)
    formats: dict[str, DemoFormat] = {}
    for name, demos in sorted(offered.items()):
        built_in = [d for d in demos if _built_in(registry, d.plugin)] if len(demos) > 1 else demos
        keeper = built_in[0] if len(built_in) == 1 else None
        if keeper is not None:
            formats[name] = keeper
        others = [d for d in demos if d is not keeper]
        for demo in others:  # a clashing format stays reachable qualified by its plugin
            formats[qualified(demo.plugin, name)] = replace(demo, name=qualified(demo.plugin, name))
        if others:
            kept = f"built-in {keeper.plugin} keeps it" if keeper else "neither gets it"
            forms = " or ".join(qualified(d.plugin, name) for d in others)
            problems.append(
                f"format {name!r} is offered by {' and '.join(d.plugin for d in demos)}; {kept}, name {forms}"
            )
    return formats, problems


def _built_in(registry: Registry, plugin: str) -> bool:
    info = registry.plugins.get(plugin)
    return info is not None and info.built_in


DEMO_MARKER = ".ctframe-demo-data.json"
"""Left in a folder by ``ctframe demo-data`` once its set is written."""


def write_demo(
    folder: Path,
    format: str,
    count: int | None,
    size: int | None,
    seed: int,
    registry: Registry | None = None,
) -> str:
    """Write the ``format`` demo set into ``folder``; one line naming the formats for an unknown one."""
    if count is not None and count < 1 or size is not None and size < 1:
        raise CtframeError("--count and --size must be positive")
    formats, problems = demo_formats(registry)
    if format not in formats:
        known = ", ".join(n for n in formats if QUALIFIER not in n) or "none (no plugin offers demo data)"
        aside = f" ({'; '.join(problems)})" if problems else ""
        raise CtframeError(f"no demo data format {format!r}; choose one of: {known}{aside}")
    said = formats[format].write(Path(folder), count=count, size=size, seed=seed)
    write_json(Path(folder) / DEMO_MARKER, {"format": format, "count": count, "size": size, "seed": seed})
    return said


def holds_demo_data(folder: Path) -> bool:
    """Whether ``folder`` was written by ``ctframe demo-data`` (then writing into it again is safe: each
    format leaves a finished set alone and completes an interrupted one)."""
    return (Path(folder) / DEMO_MARKER).is_file()

"""Synthetic data sets offered by plugins (``ctframe_demo_data``), for ``ctframe demo-data``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ctframe.base.errors import CtframeError, PluginError
from ctframe.registry.plugins import Registry, get_registry

HOOK = "ctframe_demo_data"
NAME = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class DemoFormat:
    name: str
    description: str
    write: Callable[..., str]
    plugin: str


def demo_formats(registry: Registry | None = None) -> tuple[dict[str, DemoFormat], list[str]]:
    """Every offered format by name, and one line per problem: a format two plugins offer goes to
    neither, and a plugin whose hook raises loses only its own formats."""
    manager = (registry or get_registry()).manager
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
    for name, demos in offered.items():
        if len(demos) > 1:
            problems.append(f"format {name!r} is offered by {' and '.join(d.plugin for d in demos)}")
    return {name: demos[0] for name, demos in sorted(offered.items()) if len(demos) == 1}, problems


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
        known = ", ".join(formats) or "none (no plugin offers demo data)"
        aside = f" ({'; '.join(problems)})" if problems else ""
        raise CtframeError(f"no demo data format {format!r}; choose one of: {known}{aside}")
    return formats[format].write(Path(folder), count=count, size=size, seed=seed)

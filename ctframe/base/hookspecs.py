"""Hook specifications: the extension points of ctframe.

Each ``ctframe_register_<kind>`` hook is called once per plugin when the registry is built. Those
hooks are declared from the table of kinds (:data:`ctframe.base.kinds.KINDS`, which also holds each
factory's contract), so a new kind needs no edit here. The plugin calls ``register`` once per
component it provides::

    register(name, factory, options, description, check=None)

* ``name`` -- what recipes write in ``component = "..."``; unique across all plugins.
* ``factory`` -- builds the component (signature per kind below).
* ``options`` -- a :class:`ctframe.Options` subclass: every option typed, with a default and a
  one-line ``description``.
* ``description`` -- one line for ``ctframe list-plugins``.
* ``check`` (optional) -- ``check(options, context)``, cheap checks (paths exist, files are
  reachable) that ``ctframe run`` and ``ctframe validate`` call before any work or any run
  directory; raise a :class:`ctframe.CtframeError` subclass with one line.

Implementations may accept fewer arguments than a spec names (pluggy passes only what they ask
for), so new arguments can be added without breaking existing plugins. Results of the register
hooks are ignored; everything happens through ``register``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

from ctframe.base.kinds import KINDS, KindSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    import typer

    from ctframe.base.contracts import AuditReport
    from ctframe.base.options import Options
    from ctframe.report.context import ReportContext

PROJECT = "ctframe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        options: type[Options],
        description: str,
        check: Callable[..., None] | None = None,
        reader: Callable[..., Any] | None = None,
    ) -> None: ...


@hookspec(firstresult=True)
def ctframe_audit(root: Path, options: dict[str, Any]) -> AuditReport | None:
    """Audit a dataset folder for ``ctframe audit ROOT``.

    Called for each plugin until one returns a report; return ``None`` when ``root`` is not a
    layout this plugin understands. ``options`` holds ``--set key=value`` pairs from the command line.
    """


@hookspec
def ctframe_register_commands(cli: typer.Typer) -> None:
    """Add sub-commands to the ``ctframe`` command line (``@cli.command()``).

    ``cli`` is a ``typer.Typer`` of this plugin's own; its commands are copied into ``ctframe``,
    except a core command's name (refused with a warning naming the plugin; the core one stays) and
    a name two plugins add. A plugin whose hook raises is reported as broken; the others still load.
    """


class RegisterSection(Protocol):
    def __call__(
        self,
        key: str,
        title: str,
        build: Callable[[ReportContext], str],
        order: float = 750,
    ) -> None: ...


@hookspec
def ctframe_report_sections(register: RegisterSection) -> None:
    """Add sections to a run's ``report.html``; called each time a report is built.

    ``register(key, title, build, order=750)``: ``key`` is the section's HTML id (lower-case letters,
    digits and ``_``, unique in the report), ``title`` its heading, ``build(report)`` returns the
    section's HTML from ``report.run`` (the run directory's files, a
    :class:`ctframe.report.RunArtifacts`), ``report.plot`` (embeds a PNG and writes it to ``plots/``)
    and ``report.registry``. Sections appear by increasing ``order``; the core registers its own
    through this hook (overview 100 ... run log 1100). A section whose ``build`` raises is shown as a
    one-line box, and a hook that raises costs only its own plugin's sections.
    """


def _register_hook(kind: KindSpec) -> Callable[..., None]:
    def spec(register: Register) -> None:
        pass

    spec.__name__ = spec.__qualname__ = kind.hook
    spec.__doc__ = f"Register {kind.name} components.\n\n{kind.factory}"
    return hookspec(spec)


# One spec per kind; a kind whose hook needs more than ``register`` declares it above instead.
for _kind in KINDS:
    globals().setdefault(_kind.hook, _register_hook(_kind))
del _kind

"""Hook specifications: the extension points of ctframe.

Each ``ctframe_register_<kind>`` hook is called once per plugin when the registry is built. The
plugin calls ``register`` once per component it provides::

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

if TYPE_CHECKING:
    from collections.abc import Callable

    import typer

    from ctframe.contracts import AuditReport
    from ctframe.options import Options

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


@hookspec
def ctframe_register_datasets(register: Register) -> None:
    """Register dataset components.

    Factory: ``factory(options, context: BuildContext) -> DataSplits``. Called once per run before
    training; it reads, checks and splits the data and may write the split manifest into
    ``context.run_dir`` (``None`` while validating). Raise :class:`ctframe.DataError` for bad data.
    """


@hookspec
def ctframe_register_backbones(register: Register) -> None:
    """Register backbone components.

    Factory: ``factory(options, context: BuildContext) -> Backbone``: an ``nn.Module`` with
    ``out_features`` and an ordered ``layers`` list; it normalises its own 0..255 RGB input.
    """


@hookspec
def ctframe_register_heads(register: Register) -> None:
    """Register head components.

    Factory: ``factory(options, context, in_features: int, num_classes: int) -> Head``: an
    ``nn.Module`` mapping backbone feature maps to ``num_outputs`` logits, with ``penalty()``.
    """


@hookspec
def ctframe_register_trainers(register: Register) -> None:
    """Register trainer components.

    Factory: ``factory(options, context: BuildContext) -> Trainer``; ``Trainer.fit(model, data,
    context)`` trains the :class:`~ctframe.model.Classifier` and returns the trained models to
    evaluate, with their validation and test predictions.
    """


@hookspec
def ctframe_register_metrics(register: Register) -> None:
    """Register metric components.

    Factory: ``factory(options, context: BuildContext) -> Metric``: a callable from
    :class:`~ctframe.contracts.MetricInput` to a mapping of named values.
    """


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

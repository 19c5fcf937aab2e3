"""Hook specifications: every extension point of ctframe, written out one function each.

A plugin implements a hook with a function of the same name marked :data:`hookimpl`. It may take
fewer arguments than the spec names (pluggy passes only those it asks for), so a spec can gain
arguments without breaking plugins.

There is one ``ctframe_register_<kind>s`` spec per row of :data:`ctframe.base.kinds.KINDS`
(``tests/core/test_kinds.py`` checks that they agree and that ``docs/plugins.md`` has a heading for
every spec). Each fact lives once: what ``register`` takes in :class:`Register`, each kind's factory
contract in its spec, and the objects factories return in :mod:`ctframe.base.contracts` and
:mod:`ctframe.base.model_tools`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

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
    """The callback of every ``ctframe_register_<kind>s`` hook: call it once per component.

    * ``name``: what recipes write in ``component = "..."``; a Python identifier (``"plugin:name"``
      names it qualified). A name several plugins register for one kind stays with the built-in one
      among them (a warning names both), else goes to none (a recipe naming it bare is refused,
      naming them); each other one is reachable qualified.
    * ``factory``: builds the component; its arguments and result are the kind's (see its spec).
    * ``options``: a :class:`ctframe.Options` subclass, every option typed, with a default and a
      one-line ``description``; recipes are validated against it before any work.
    * ``description``: one line for ``ctframe list-plugins``.
    * ``check`` (optional): ``check(options, context)``, cheap checks (paths exist, files are
      reachable) that ``ctframe run`` and ``ctframe validate`` call before any work or any run
      directory; raise a :class:`ctframe.CtframeError` subclass with one line.
    * ``reader`` (datasets only): see :func:`ctframe_register_datasets`.

    A call with bad arguments raises :class:`ctframe.PluginError`: the plugin is then broken and
    nothing it registered is used.
    """

    def __call__(
        self,
        name: str,
        factory: Callable[..., Any],
        options: type[Options],
        description: str,
        check: Callable[..., None] | None = None,
        reader: Callable[..., Any] | None = None,
    ) -> None: ...


# The registration hooks, in the order of KINDS. Each is called once per plugin, kind after kind, when
# a process first builds its registry; return values are ignored, everything goes through ``register``.


@hookspec
def ctframe_register_datasets(register: Register) -> None:
    """Register datasets: ``register(name, factory, options, description, check=None, reader=None)``.

    Called once per plugin when the registry is built. ``factory(options, context) -> DataSplits``
    runs once per run before training (and for ``ctframe validate``, with ``context.run_dir`` at
    ``None``): it reads, checks and splits the data, may write the split manifest into
    ``context.run_dir`` and raises :class:`ctframe.DataError` for bad data. ``reader(options,
    context) -> FileReader`` (optional) reads new files as training did; ``ctframe predict``,
    ``evaluate`` and the report's gallery need it. A recipe's ``[dataset]`` names one dataset.
    """


@hookspec
def ctframe_register_backbones(register: Register) -> None:
    """Register backbones: ``register(name, factory, options, description, check=None)``.

    Called once per plugin when the registry is built. ``factory(options, context) -> Backbone``:
    an ``nn.Module`` with ``out_features`` and an ordered ``layers`` list that normalises its own
    0..255 RGB input; when ``context.restoring`` is true its weights are loaded right after, so it
    fetches no pretrained ones. A recipe's ``[backbone]`` names one backbone.
    """


@hookspec
def ctframe_register_heads(register: Register) -> None:
    """Register heads: ``register(name, factory, options, description, check=None)``.

    Called once per plugin when the registry is built. ``factory(options, context, in_features,
    num_classes) -> Head``: an ``nn.Module`` mapping feature maps ``(N, in_features, h, w)`` to
    ``(N, num_outputs)`` logits, with ``penalty()``, the term added to the loss. A recipe's ``[head]``
    names one head.
    """


@hookspec
def ctframe_register_trainers(register: Register) -> None:
    """Register trainers: ``register(name, factory, options, description, check=None)``.

    Called once per plugin when the registry is built. ``factory(options, context) -> Trainer``
    (:class:`ctframe.api.Trainer`, whose attributes the engine reads): ``fit(model, data, context)``
    trains the classifier on the train and val splits and returns the weights of each model to
    evaluate; the engine predicts and evaluates them. A recipe's ``[trainer]`` names one trainer.
    """


@hookspec
def ctframe_register_metrics(register: Register) -> None:
    """Register metrics: ``register(name, factory, options, description, check=None)``.

    Called once per plugin when the registry is built. ``factory(options, context) -> Metric``: a
    callable from :class:`ctframe.MetricInput` to named values; floats are bootstrapped and
    tabulated, other values stored. A recipe's ``metrics = [...]`` lists several, whose values
    make one table: a value name that an earlier metric returned is ignored, with a warning.
    """


@hookspec
def ctframe_register_exporters(register: Register) -> None:
    """Register export formats: ``register(name, factory, options, description, check=None)``.

    Called once per plugin when the registry is built. ``factory(options, context) -> Exporter``
    (:class:`ctframe.api.Exporter`): ``export(module, example, path, metadata)`` writes a uint8-in,
    probabilities-out file with a dynamic batch and ``load(path)`` runs it, so that ``ctframe export
    --format NAME`` can check every file against the PyTorch model. Recipes never name exporters.
    """


@hookspec
def ctframe_register_explainers(register: Register) -> None:
    """Register explanation methods: ``register(name, factory, options, description, check=None)``.

    Called once per plugin when the registry is built. ``factory(options, context) -> Explainer``
    (:class:`ctframe.api.Explainer`): ``explainer(model, layer, images, targets)`` returns one map in
    [0, 1] per image, ``(N, H, W)``, of where each target's score comes from, seen at ``layer`` (the
    backbone's ``cam_layer``). ``ctframe explain --method NAME`` and the report's gallery use it;
    recipes never name explainers.
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


class RegisterDemo(Protocol):
    def __call__(self, name: str, write: Callable[..., str], description: str) -> None: ...


@hookspec
def ctframe_demo_data(register: RegisterDemo) -> None:
    """Offer a synthetic data set for ``ctframe demo-data FOLDER --format NAME``.

    ``register(name, write, description)``: ``name`` is the format (lower-case letters, digits, ``-``),
    ``description`` one line for the command's help. ``write(folder, count=None, size=None, seed=0)``
    writes the set into ``folder`` (``count``: the format's unit, such as images per class or patients;
    ``None`` for the format's default) and returns one line saying what it wrote. A format several
    plugins offer stays with the built-in one, else goes to none; each other one is offered as
    ``plugin:format``. Raise :class:`ctframe.DataError` for a folder that cannot take the data.
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
    :class:`ctframe.api.report.RunArtifacts`), ``report.plot`` (embeds a PNG and writes it to ``plots/``)
    and ``report.registry``. Sections appear by increasing ``order``; the core registers its own
    through this hook (overview 100 ... run log 1100). A section whose ``build`` raises is shown as a
    one-line box, and a hook that raises costs only its own plugin's sections.
    """

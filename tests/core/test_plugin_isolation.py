"""A zoo of bad third-party plugins: each is reported, and ctframe and the other plugins keep working.

Every case installs one or two throwaway distributions next to the toy plugin and the built-in
metrics, then checks the same things: ``--version`` works without building the registry,
``list-plugins`` exits 0 and reports the culprit in one line, a recipe of good components validates,
a recipe naming the bad component fails with one line naming the plugin, and no traceback is shown.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.console import Console

from ctframe.commands import shared
from ctframe.commands.main import main
from ctframe.registry import plugins as plugins_module
from ctframe.registry.plugins import PLUGINS_ENV
from tests.conftest import install_distribution

HEADER = """\
from ctframe import AuditReport, Options, hookimpl

def _factory(options, context):
    return lambda inputs: {}

def _metric(register, name):
    register(name, _factory, Options, f"{name} from " + __name__)
"""


def _hook(signature: str, *body: str) -> str:
    """Source of one hook implementation: ``signature`` without ``def``, then its lines."""
    return "\n@hookimpl\ndef " + signature + ":\n" + "".join(f"    {line}\n" for line in body or ["pass"])


def _metrics(*names: str) -> str:
    return _hook("ctframe_register_metrics(register)", *(f"_metric(register, {n!r})" for n in names))


def _command(name: str) -> list[str]:
    return [f"@cli.command({name!r})", f"def command_{name}():", f"    print({name!r} + ' from ' + __name__)"]


def _commands(*names: str) -> str:
    return _hook("ctframe_register_commands(cli)", *(line for name in names for line in _command(name)))


@dataclass(frozen=True)
class Case:
    sources: dict[str, str]
    """Entry point name -> module body (after HEADER)."""
    culprit: str | None
    """The plugin list-plugins must report, with ``reason`` in its one line; None when all are healthy."""
    reason: str = ""
    component: str | None = None
    """A metric the bad plugin offers; a recipe naming it must fail (or pass when ``culprit`` is None)."""
    recipe_error: str = ""
    commands: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Extra command lines to run: argv (space-separated) -> (exit code, text expected in the output)."""
    warning: str = ""
    """A line every command prints on stderr (refused plugin commands)."""


CASES = {
    "import fails": Case(
        {"bad": "import a_module_that_does_not_exist\n"},
        "bad",
        "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'",
        "bad_metric",
        "unknown metric component 'bad_metric'",
    ),
    "exits while importing": Case(
        {"bad": "raise SystemExit(3)\n"},
        "bad",
        "SystemExit: 3",
        "bad_metric",
        "not loaded: plugin 'bad' (SystemExit: 3",
    ),
    "raises in a register hook": Case(
        {
            "bad": _hook(
                "ctframe_register_metrics(register)",
                "_metric(register, 'bad_metric')",
                "raise RuntimeError('boom while registering')",
            )
        },
        "bad",
        "RuntimeError: boom while registering",
        "bad_metric",
        "metric 'bad_metric' comes from plugin 'bad', which failed: RuntimeError: boom while registering",
    ),
    "misspelled hook": Case(
        {"bad": _metrics("bad_metric") + _hook("ctframe_register_head(register)")},
        "bad",
        "implements unknown hook 'ctframe_register_head' (did you mean 'ctframe_register_heads'?)",
        "bad_metric",
        "not loaded: plugin 'bad' (implements unknown hook 'ctframe_register_head'",
    ),
    "hook argument not in the spec": Case(
        {"bad": _hook("ctframe_register_metrics(reg)")},
        "bad",
        "Argument(s) {'reg'} are declared in the hookimpl but can not be found in the hookspec",
        "bad_metric",
        "not loaded: plugin 'bad'",
    ),
    "options that are not a schema": Case(
        {"bad": _hook("ctframe_register_metrics(register)", "register('bad_metric', _factory, dict, 'x')")},
        "bad",
        "plugin 'bad' registered metric 'bad_metric' with options that are not a ctframe.Options class",
        "bad_metric",
        "not loaded: plugin 'bad'",
    ),
    "name clash with a built-in": Case(  # the built-in keeps the name; the other is reachable qualified
        {"bad": _metrics("accuracy", "bad_own")},
        None,
        component="accuracy",
        commands={
            "validate --quick {recipe} --set metrics=['bad_own']": (0, "OK"),
            "validate --quick {recipe} --set metrics=['bad:accuracy']": (0, "OK"),
        },
        warning="warning: metric 'accuracy' is registered by built-in plugin 'classification_metrics' and "
        "by plugin 'bad'; the built-in keeps the name, name plugin 'bad''s as 'bad:accuracy'",
    ),
    "name clash between two third-party plugins": Case(
        {"bad": _metrics("shared_metric"), "bad2": _metrics("shared_metric")},
        "bad2",
        "metric 'shared_metric' is also registered by plugin 'bad'",
        "shared_metric",
        "metric 'shared_metric' is registered by two plugins: 'bad' and 'bad2'",
    ),
    "raises in ctframe_register_commands": Case(
        {
            "bad": _metrics("bad_metric")
            + _hook("ctframe_register_commands(cli)", "raise RuntimeError('boom in commands')")
        },
        "bad",
        "RuntimeError: boom in commands",
        "bad_metric",
        "metric 'bad_metric' comes from plugin 'bad', which failed: RuntimeError: boom in commands",
    ),
    "command named run": Case(
        {"bad": _metrics("bad_metric") + _commands("run", "greet")},
        None,
        component="bad_metric",
        commands={
            "run": (2, "name a recipe file"),
            "greet": (0, "greet from bad_ctframe"),
            "--help": (0, "greet"),
        },
        warning="warning: plugin 'bad': command 'run' would shadow the core command; ignored",
    ),
    "one command name from two plugins": Case(
        {"bad": _commands("greet"), "bad2": _commands("greet")},
        None,
        commands={"greet": (2, "No such command 'greet'")},
        warning="warning: command 'greet' is added by two plugins: 'bad' and 'bad2'; left out",
    ),
    "broken plugin with audit and command hooks": Case(
        {
            "bad": _hook("ctframe_register_metrics(register)", "raise RuntimeError('broken')")
            + _hook("ctframe_audit(root, options)", "return AuditReport('audited by it', [], [])")
            + _commands("hello")
        },
        "bad",
        "RuntimeError: broken",
        "bad_metric",
        "not loaded: plugin 'bad' (RuntimeError: broken",
        commands={
            "audit {data}": (2, "no installed dataset plugin recognises this folder layout"),
            "hello": (2, "No such command 'hello'"),
        },
    ),
}


def _module_name(entry_point: str) -> str:
    return f"{entry_point}_ctframe"


@pytest.fixture
def install_plugins(tmp_path, monkeypatch, toy_site):
    installed: list[str] = []

    def install(sources: dict[str, str]) -> None:
        for entry_point, body in sources.items():
            module = _module_name(entry_point)
            source = tmp_path / "src" / f"{module}.py"
            source.parent.mkdir(exist_ok=True)
            source.write_text(HEADER + body)
            site = install_distribution(tmp_path / f"site-{entry_point}", source, module, entry_point)
            monkeypatch.syspath_prepend(str(site))
            installed.append(module)
        monkeypatch.setenv(PLUGINS_ENV, ",".join(["toy", "classification_metrics", *sources]))

    yield install
    for module in installed:
        sys.modules.pop(module, None)


def _run(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; stdout and stderr as text (stderr unwrapped)."""
    out, err = io.StringIO(), io.StringIO()
    original_out, original_err = shared.out, shared.err
    shared.out = Console(file=out, width=10_000, highlight=False, soft_wrap=True)
    shared.err = Console(file=err, width=10_000, highlight=False, soft_wrap=True)
    real_stdout, real_stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # plain print() in commands, and typer's usage errors
    try:
        code = main(list(argv))
    finally:
        sys.stdout, sys.stderr = real_stdout, real_stderr
        shared.out, shared.err = original_out, original_err
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


def _lines(text: str, warning: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not (warning and line.startswith(warning))]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_bad_plugin_breaks_nothing_else(case: Case, install_plugins, toy_recipe, tmp_path):
    install_plugins(case.sources)

    code, out, err = _run("--version")
    assert (code, out.strip(), err) == (0, "ctframe 0.1.0", "")
    assert plugins_module._cached == {}, "--version built the registry"
    assert not any(_module_name(ep) in sys.modules for ep in case.sources), "--version imported a plugin"

    code, out, err = _run("list-plugins", "--json")
    assert code == 0
    listing = json.loads(out)
    assert {"toy_data", "toy_accuracy", "f1"} <= {c["component"] for c in listing["components"]}
    reported = [entry for entry in listing["broken"] if entry["plugin"] == case.culprit]
    if case.culprit is None:
        assert listing["broken"] == []
    else:
        (entry,) = reported
        assert case.reason in entry["error"] and "\n" not in entry["error"], entry["error"]

    code, _, err = _run("list-plugins")
    assert code == 0
    if case.culprit:
        (line,) = [
            line for line in _lines(err, case.warning) if line.startswith(f"plugin {case.culprit!r} (")
        ]
        assert case.reason in line
    if case.warning:
        assert case.warning in err

    code, out, err = _run("validate", "--quick", str(toy_recipe))
    assert code == 0 and not _lines(err, case.warning), err

    if case.component:
        metrics = f'metrics=["{case.component}"]'
        code, out, err = _run("validate", "--quick", str(toy_recipe), "--set", metrics)
        if case.culprit is None:
            assert code == 0, err
        else:
            assert code == 2
            (line,) = _lines(err, case.warning)
            assert line.startswith(f"error: {toy_recipe}: [metrics[0]] component: ")
            assert case.recipe_error in line and "'bad" in line, line

    (tmp_path / "data").mkdir()
    for command, (expected_code, expected_text) in case.commands.items():
        code, out, err = _run(*command.format(data=tmp_path / "data", recipe=toy_recipe).split())
        assert code == expected_code, (command, out, err)
        assert expected_text in out + err, (command, out, err)


def test_the_console_script_shows_no_traceback(tmp_path, toy_site):
    """End to end through the installed ``ctframe`` script, several bad plugins at once."""
    paths = [str(toy_site)]
    for entry_point, body in (
        ("typo", _hook("ctframe_register_metric(register)")),
        ("dupe", _metrics("accuracy")),
        ("crash", _hook("ctframe_register_commands(cli)", "raise RuntimeError('boom')")),
    ):
        source = tmp_path / f"{entry_point}_ctframe.py"
        source.write_text(HEADER + body)
        paths.append(str(install_distribution(tmp_path / entry_point, source, source.stem, entry_point)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        PLUGINS_ENV: "toy,classification_metrics,typo,dupe,crash",
    }
    script = Path(sys.executable).with_name("ctframe")

    def ctframe(*argv: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(script), *argv], capture_output=True, text=True, env=env, timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    assert ctframe("--version").returncode == 0
    listing = ctframe("list-plugins", "--json")
    assert listing.returncode == 0
    assert {entry["plugin"] for entry in json.loads(listing.stdout)["broken"]} == {"typo", "crash"}
    (warning,) = json.loads(listing.stdout)["warnings"]  # the built-in keeps 'accuracy' from dupe
    assert "built-in plugin 'classification_metrics' and by plugin 'dupe'" in warning
    listed = ctframe("list-plugins")
    assert listed.returncode == 0
    assert f"warning: {warning}" in listed.stderr
    reasons = {
        "typo": "failed: implements unknown hook 'ctframe_register_metric'",
        "crash": "failed: RuntimeError: boom",
    }
    for plugin, reason in reasons.items():
        (line,) = [line for line in listed.stderr.splitlines() if line.startswith(f"plugin {plugin!r}")]
        assert reason in line
    assert "toy_data" in listed.stdout

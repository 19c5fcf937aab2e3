"""Plugin manager and registry, and every hook called by the core."""

from __future__ import annotations

import json
import sys
import types

from ctframe import Options, hookimpl
from ctframe.base import hookspecs
from ctframe.commands.main import main
from ctframe.registry.plugins import PLUGINS_ENV, build_registry
from tests.conftest import TESTS, install_distribution


def _plugin(name: str, component: str, kind_hook: str = "ctframe_register_metrics", fail: bool = False):
    module = types.ModuleType(name)

    def register_hook(register):
        if fail:
            raise RuntimeError("boom while registering")
        register(component, lambda options, context: None, Options, f"{component} from {name}")

    register_hook.__name__ = kind_hook
    setattr(module, kind_hook, hookimpl(register_hook))
    return module


def test_components_are_registered_with_their_plugin():
    registry = build_registry(extra=[_plugin("alpha", "m1")], selection="")
    component = registry.get("metric", "m1")
    assert component is not None and component.plugin == "alpha"
    assert component.description == "m1 from alpha"


def test_duplicate_component_names_are_left_out_and_name_both_plugins():
    registry = build_registry(
        extra=[_plugin("alpha", "m1"), _plugin("beta", "m1"), _plugin("gamma", "m2")], selection=""
    )
    assert registry.names("metric") == ["m2"] and not registry.broken()
    assert registry.clash_message("metric", "m1") == (
        "metric 'm1' is registered by two plugins: 'alpha' and 'beta'; "
        "name one of them as 'alpha:m1' or 'beta:m1', or exclude one with CTFRAME_PLUGINS"
    )
    assert registry.get("metric", "beta:m1").description == "m1 from beta"  # reachable qualified


def test_a_plugin_failing_to_register_is_reported_and_the_others_load():
    registry = build_registry(extra=[_plugin("good", "m1"), _plugin("bad", "m2", fail=True)], selection="")
    assert registry.names("metric") == ["m1"]
    (broken,) = registry.broken()
    assert broken.name == "bad" and "boom while registering" in broken.error


def test_misspelled_hook_implementation_marks_the_plugin_broken():
    module = types.ModuleType("typo")

    @hookimpl
    def ctframe_register_metric(register):  # missing the final "s"
        pass

    module.ctframe_register_metric = ctframe_register_metric
    registry = build_registry(extra=[module, _plugin("good", "m1")], selection="")
    assert registry.names("metric") == ["m1"]
    (broken,) = registry.broken()
    assert broken.error == (
        "implements unknown hook 'ctframe_register_metric' (did you mean 'ctframe_register_metrics'?)"
    )
    assert registry.manager.get_plugin("typo") is None


def test_register_rejects_options_that_are_not_a_schema():
    module = types.ModuleType("sloppy")

    @hookimpl
    def ctframe_register_heads(register):
        register("h", lambda *a: None, dict, "no schema")

    module.ctframe_register_heads = ctframe_register_heads
    (broken,) = build_registry(extra=[module], selection="").broken()
    assert broken.name == "sloppy" and "not a ctframe.Options class" in broken.error


def test_environment_variable_selects_entry_points(toy_site, monkeypatch):
    assert build_registry().names("dataset") == ["toy_data"]
    monkeypatch.setenv("CTFRAME_PLUGINS", "")
    assert build_registry().names("dataset") == []


def test_third_party_package_is_listed(toy_site, capsys):
    assert main(["list-plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = {(c["component"], c["kind"]): c for c in listing["components"]}
    assert rows[("toy_trainer", "trainer")]["package"] == "toy_ctframe"
    assert rows[("toy_trainer", "trainer")]["version"] == "0.1"
    assert {kind for _, kind in rows} == {"dataset", "backbone", "head", "trainer", "metric"}


def test_verbose_listing_shows_options(toy_site, capsys):
    assert main(["list-plugins", "--json", "--verbose", "--kind", "trainer"]) == 0
    (trainer,) = json.loads(capsys.readouterr().out)["components"]
    options = {o["name"]: o for o in trainer["options"]}
    assert options["epochs"]["default"] == 20
    assert options["epochs"]["description"] == "passes over the training split"


def test_broken_entry_point_is_listed_and_named_in_recipe_errors(
    tmp_path, monkeypatch, toy_site, toy_recipe, capsys
):
    broken_source = tmp_path / "broken_ctframe.py"
    broken_source.write_text("import a_module_that_does_not_exist\n")
    site = install_distribution(tmp_path / "site2", broken_source, "broken_ctframe", "broken")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("CTFRAME_PLUGINS", "toy,broken")

    assert main(["list-plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["broken"][0]["plugin"] == "broken"
    assert "a_module_that_does_not_exist" in listing["broken"][0]["error"]
    assert any(c["component"] == "toy_data" for c in listing["components"])

    assert main(["validate", str(toy_recipe), "--set", "backbone.component=resnet_from_broken"]) == 2
    error = capsys.readouterr().err
    assert "unknown backbone component 'resnet_from_broken'" in error
    assert "plugin 'broken'" in error and "a_module_that_does_not_exist" in error


def test_built_in_plugins_are_entry_points():
    from importlib import metadata

    names = {ep.name: ep.value for ep in metadata.entry_points(group="ctframe")}
    for plugin_dir in (TESTS.parent / "plugins").iterdir():
        if plugin_dir.is_dir() and plugin_dir.name.startswith("ctframe_"):
            assert plugin_dir.name in names.values(), f"{plugin_dir.name} has no entry point"


def test_plugins_add_commands_and_audit_folders(tmp_path, monkeypatch, capsys):
    import typer

    from ctframe import AuditReport, AuditSection
    from ctframe.commands import shared

    source = tmp_path / "extras_ctframe.py"
    source.write_text(
        "import typer\n"
        "from ctframe import AuditReport, AuditSection, hookimpl\n"
        "@hookimpl\n"
        "def ctframe_register_commands(cli):\n"
        "    @cli.command('hello')\n"
        "    def hello(name: str):\n"
        "        print(f'hello {name}')\n"
        "@hookimpl\n"
        "def ctframe_audit(root, options):\n"
        "    if not (root / 'marker').exists():\n"
        "        return None\n"
        "    return AuditReport('extras audit', [AuditSection('files', ['name'], [['marker']])],\n"
        '                       [f"checked with {options}"])\n'
    )
    site = install_distribution(tmp_path / "site", source, "extras_ctframe", "extras")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("CTFRAME_PLUGINS", "extras")
    monkeypatch.setattr(shared, "app", _fresh_app(shared.app, typer))

    assert main(["hello", "world"]) == 0
    assert capsys.readouterr().out.strip() == "hello world"

    (tmp_path / "data").mkdir()
    assert main(["audit", str(tmp_path / "data")]) == 2
    assert "no installed dataset plugin recognises" in capsys.readouterr().err
    (tmp_path / "data" / "marker").write_text("")
    assert main(["audit", str(tmp_path / "data"), "--json", "--set", "depth=2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["title"] == "extras audit" and report["warnings"] == ["checked with {'depth': '2'}"]
    assert AuditReport and AuditSection


def _fresh_app(core_app, typer):
    """A copy of the CLI app, so a test's plugin commands do not stay registered."""
    app = typer.Typer(name="ctframe", add_completion=False, pretty_exceptions_enable=False)
    app.registered_callback = core_app.registered_callback
    app.registered_commands = list(core_app.registered_commands)
    return app


# A plugin that implements every hook spec there is (read from ctframe.base.hookspecs when it loads) and
# records each call: a spec that nothing in the core calls is then found missing.
RECORDER = """
from ctframe import hookimpl
from ctframe.base import hookspecs

CALLED = set()


def _recording(name):
    def record():  # an implementation may take fewer arguments than its spec
        CALLED.add(name)

    record.__name__ = name
    return hookimpl(record)


for _name, _value in list(vars(hookspecs).items()):
    if hasattr(_value, "ctframe_spec"):
        globals()[_name] = _recording(_name)
"""


def test_the_core_calls_every_hook(toy_site, toy_recipe, tmp_path, monkeypatch, capsys):
    """A toy run through the command line (registry, plugin commands, report) and ``ctframe audit``
    between them call every hook spec: a spec without a caller fails here."""
    source = tmp_path / "recorder_ctframe.py"
    source.write_text(RECORDER)
    site = install_distribution(tmp_path / "site2", source, "recorder_ctframe", "rec")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(PLUGINS_ENV, "toy,rec")
    try:
        output = tmp_path / "runs"
        assert main(["run", str(toy_recipe), "--output", str(output), "--set", "trainer.epochs=1"]) == 0
        assert main(["audit", str(output)]) == 2  # the recorder recognises no folder: asked, none answered
        assert "no installed dataset plugin recognises" in capsys.readouterr().err
        assert main(["demo-data", str(tmp_path / "demo"), "--format", "none"]) == 2  # offered by nobody
        called = sys.modules["recorder_ctframe"].CALLED
    finally:
        sys.modules.pop("recorder_ctframe", None)
    specs = {name for name, value in vars(hookspecs).items() if hasattr(value, "ctframe_spec")}
    assert len(specs) >= 10
    assert sorted(specs - called) == [], "hook specs that the core never calls"

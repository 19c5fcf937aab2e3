"""The run directory's layout: one module names each file, no other module spells it, the docs list it."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctframe.storage import layout
from ctframe.storage.layout import RunFile
from tests.conftest import REPO

PLUGIN_DECLARATIONS = sorted((REPO / "plugins").glob("ctframe_*/run_files.py"))
DECLARING = {REPO / "ctframe" / "storage" / "layout.py", *PLUGIN_DECLARATIONS}
HOLE = "\0"  # stands for a formatted value (f-string) or a ``{placeholder}`` in a shape
IGNORE = re.compile(r"#\s*layout:\s*ignore\b")
"""A line ending in ``# layout: ignore (why)`` uses a declared name for something else."""
PATH_CALLS = {"Path", "PurePath", "PurePosixPath", "joinpath", "subdir", "join"}
KEYED_CALLS = {"get", "pop", "setdefault"}  # dict access: a JSON key like "models", not a path


def all_entries() -> list[RunFile]:
    entries = list(layout.CORE)
    for path in PLUGIN_DECLARATIONS:
        module = importlib.import_module(f"{path.parent.name}.run_files")
        entries.extend(module.RUN_FILES)
    return entries


# ------------------------------------------------------------------------------------------ RunFile


def test_patterned_names_fill_in_and_read_back_their_key(tmp_path):
    assert layout.HISTORY.path(tmp_path, "phase1") == tmp_path / "history_phase1.csv"
    assert layout.MODEL_INFO.match("models/a_b.json") == "a_b"
    assert layout.MODEL_INFO.match("models/a/b.json") is None
    assert layout.MODEL_INFO.match("history_a.csv") is None
    assert layout.CV_FOLD.filename(3) == "fold-3"
    assert layout.RECIPE.match("recipe.toml") == "" and layout.RECIPE.match("x.toml") is None
    assert (layout.PLOT.display, layout.MODELS.display) == ("plots/<name>.png", "models/")
    with pytest.raises(ValueError):
        layout.HISTORY.filename()  # a patterned name needs its key
    with pytest.raises(ValueError):
        layout.RECIPE.filename("x")
    with pytest.raises(ValueError):
        layout.HISTORY.filename("../x")


def test_find_lists_what_exists_by_key(tmp_path):
    for key in ("b", "a"):
        layout.MODEL_INFO.path(tmp_path, key).parent.mkdir(exist_ok=True)
        layout.MODEL_INFO.path(tmp_path, key).write_text("{}")
    layout.MODEL_INDEX.path(tmp_path).write_text("{}")
    assert list(layout.MODEL_INFO.find(tmp_path)) == ["a", "b", "index"]  # index.json has the same shape
    assert layout.HISTORY.find(tmp_path) == {}
    assert layout.HISTORY.find(tmp_path / "missing") == {}


def test_every_entry_is_declared_once_and_core_lists_the_core():
    entries = all_entries()
    keys = [(entry.name, place) for entry in entries for place in entry.places]
    assert len(keys) == len(set(keys)), "a name is declared twice for the same place"
    assert {entry.owner for entry in layout.CORE} == {"core"}
    assert all(entry.owner != "core" for entry in entries if entry not in layout.CORE)
    declared = {value for value in vars(layout).values() if isinstance(value, RunFile)}
    assert declared == set(layout.CORE), "a RunFile in ctframe.storage.layout is missing from CORE"


# -------------------------------------------------------------------------------------------- docs

DOCS = REPO / "docs" / "recipes.md"
TABLE_HEADING = "### What a run directory holds"


def documented_rows() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The table under ``TABLE_HEADING``: shown name -> (owner, places)."""
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    start = lines.index(TABLE_HEADING)
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or cells[0] == "file or folder" or set(cells[0]) <= set("-"):
            continue
        rows[cells[0].strip("`")] = (cells[1], tuple(place.strip() for place in cells[2].split(",")))
    return rows


def _row(entry: RunFile) -> str:
    return f"| `{entry.display}` | {entry.owner} | {', '.join(entry.places)} | {entry.description} |"


def test_docs_list_every_entry_of_the_layout_and_nothing_else():
    """Checked rather than generated: the table sits in prose a person edits, with descriptions written
    for readers; a failure prints the layout's rows to paste."""
    documented = documented_rows()
    entries = {entry.display: entry for entry in all_entries()}
    missing = [_row(entry) for shown, entry in entries.items() if shown not in documented]
    stale = [shown for shown in documented if shown not in entries]
    wrong = [
        f"{shown}: documented as {documented[shown]}, declared as {(entry.owner, entry.places)}"
        for shown, entry in entries.items()
        if shown in documented and documented[shown] != (entry.owner, entry.places)
    ]
    assert not missing, f"{DOCS.name} lacks (add under {TABLE_HEADING!r}):\n" + "\n".join(missing)
    assert not stale, f"{DOCS.name} documents what the layout does not declare: {stale}"
    assert not wrong, "\n".join(wrong)


# ------------------------------------------------------------------------------------- no literals


@dataclass(frozen=True)
class Spelling:
    """What a name looks like in code: the whole relative name and its last part, as shapes."""

    shape: str
    anywhere: bool
    """A name with a suffix is a file name wherever it appears; a bare word (``models``) only in a
    path expression (``run / "models"``, ``Path("models")``, ``folder.name == "models"``)."""


def _shape(text: str) -> str:
    return re.sub(r"\{\w*\}", HOLE, text)


def spellings(entries: list[RunFile]) -> dict[str, tuple[str, bool]]:
    """Shape -> (the entry's name, flagged anywhere?) for every spelling of every entry."""
    found: dict[str, tuple[str, bool]] = {}
    for entry in entries:
        for text in {entry.name, entry.name.rsplit("/", 1)[-1]}:
            shape = _shape(text)
            if shape.replace(HOLE, ""):  # "{name}" alone would match any f"{x}"
                found[shape] = (entry.name, "." in text)
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of string constants that are statements (docstrings, attribute docstrings)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.JoinedStr)
    }


def _not_a_path(tree: ast.AST) -> set[int]:
    """ids of strings used as dict keys: ``{"models": ...}``, ``x["models"]``, ``x.get("models")``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            skip.update(id(key) for key in node.keys if key is not None)
        elif isinstance(node, ast.Subscript):
            skip.add(id(node.slice))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in KEYED_CALLS and node.args:
            skip.add(id(node.args[0]))
    return skip


def _in_path_expression(tree: ast.AST) -> set[int]:
    """ids of strings joined into or compared with a path."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            inside.update((id(node.left), id(node.right)))
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name in PATH_CALLS:
                inside.update(id(arg) for arg in node.args)
        elif isinstance(node, ast.Assign) and all(
            isinstance(t, ast.Name) and t.id.isupper() for t in node.targets
        ):
            inside.add(id(node.value))  # MODELS_DIR = "models": a constant naming a file
        elif isinstance(node, ast.Compare) and any(
            getattr(part, "attr", None) in ("name", "stem") for part in (node.left, *node.comparators)
        ):
            inside.update(id(part) for part in (node.left, *node.comparators))
    return inside


def _strings(tree: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """Every string constant and f-string as a shape; the parts of an f-string are not strings of
    their own."""
    parts = {id(value) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for value in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            yield node, _shape(node.value)
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
            yield node, text


def literal_uses(path: Path, known: dict[str, tuple[str, bool]]) -> list[str]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = source.splitlines()
    skip = _docstrings(tree) | _not_a_path(tree)
    paths = _in_path_expression(tree)
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    found = []
    for node, shape in _strings(tree):
        if " " not in shape:  # a path or glob pattern ("*/metrics.json"): its last part too
            shape = next((part for part in (shape, shape.rsplit("/", 1)[-1]) if part in known), shape)
        if shape not in known or id(node) in skip or IGNORE.search(lines[node.lineno - 1]):
            continue
        name, anywhere = known[shape]
        if anywhere or id(node) in paths:
            found.append((node.lineno, f"{where}:{node.lineno}: spells {name!r}"))
    return [text for _, text in sorted(found)]


def modules() -> list[Path]:
    files = sorted([*(REPO / "ctframe").rglob("*.py"), *(REPO / "plugins").rglob("*.py")])
    return [f for f in files if f not in DECLARING]


def test_no_module_spells_a_run_file_name():
    known = spellings(all_entries())
    found = [use for path in modules() for use in literal_uses(path, known)]
    assert not found, "use the names of ctframe.storage.layout (or ctframe.api):\n" + "\n".join(found)


def test_the_check_catches_literals_and_ignores_other_strings(tmp_path):
    known = spellings(all_entries())
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Writes metrics.json."""\n'
        'a = run / "metrics.json"\n'
        'b = run / f"history_{key}.csv"\n'
        'c = folder / f"{entry.key}.safetensors"\n'
        'd = run / "models"\n'
        'e = metrics.get("models")\n'
        'f = {"models": keys}\n'
        'g = "models"\n'
        'h = f"{run}: history_{key}.csv is empty"\n'
        'i = hub / "checkpoints"  # layout: ignore (torch hub\'s folder)\n'
        'j = "predictions_{key}.csv".format(key=key)\n'
        'k = folder.name == "external"\n'
        'l = folder.glob("*/metrics.json")\n'
        'M = "plots"\n'
        'n = "RUN/models is gone"\n'
    )
    lines = [int(use.split(":")[1]) for use in literal_uses(sample, known)]
    assert lines == [2, 3, 4, 5, 11, 12, 13, 14]


def test_every_writer_and_reader_named_is_a_module():
    """The layout's writer and reader columns name modules that exist, so they stay true after a move."""
    named = {module for entry in all_entries() for module in (entry.writer, *entry.readers)}
    missing = sorted(module for module in named if importlib.util.find_spec(module) is None)
    assert not missing, f"layout entries name modules that do not exist: {missing}"

"""What every hostile-input test shares: running the command line in this process, fingerprinting a
folder, installing the toy plugin, editing recipe text, and the one check of a refused command."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Iterable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from rich.console import Console

from tests.conftest import TESTS


def with_line(text: str, section: str, line: str) -> str:
    """``text`` with ``line`` added at the top of ``[section]`` (``""``: before the first table)."""
    if not section:
        return f"{line}\n{text}"
    header = f"[{section}]\n"
    assert header in text, section
    return text.replace(header, f"{header}{line}\n", 1)


def without_section(text: str, section: str) -> str:
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line == f"[{section}]"
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n"


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """``ctframe ARGV`` in this process: exit code, stdout, stderr (rich consoles never wrap)."""
    from ctframe.commands import shared
    from ctframe.commands.main import main

    out, err = io.StringIO(), io.StringIO()
    saved = shared.out, shared.err
    shared.out = Console(file=out, width=300, highlight=False, soft_wrap=True)
    shared.err = Console(file=err, width=300, highlight=False, soft_wrap=True)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
    finally:
        shared.out, shared.err = saved
    return code, out.getvalue(), err.getvalue()


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` with a fingerprint (content hash for files); symlinks are not followed."""
    found = {}
    for parent, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(parent) / name
            if path.is_symlink():
                found[str(path)] = "link -> " + os.readlink(path)
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[str(path)] = "folder"
    return found


def install_toy(site: Path) -> None:
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(TESTS / "toy" / "toy_ctframe.py", site / "toy_ctframe.py")
    info = site / "toy_ctframe-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy_ctframe\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ctframe]\ntoy = toy_ctframe\n")


def refused(code: int, out: str, err: str, culprit: Iterable[str], expected_code: int = 2) -> str:
    """Check a refusal: the exit code, no traceback, exactly one ``error:`` line on stderr naming every
    part of ``culprit``. Returns the line."""
    shown = out + err
    assert "Traceback" not in shown, shown
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    (line,) = lines
    assert line.startswith("error: "), line
    for part in culprit:
        assert part in line, f"{part!r} not in: {line}"
    assert code == expected_code, line
    return line

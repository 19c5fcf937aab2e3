"""The run directory: one folder per run, named ``<stem>-<YYYYmmdd-HHMMSS>``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ctframe.storage.files import write_json, write_text
from ctframe.storage.layout import RunFile


class RunDirectory:
    """One folder per run: ``<output>/<stem>-<YYYYmmdd-HHMMSS>``; :mod:`ctframe.storage.layout` names
    what it holds."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, output: Path, stem: str, now: datetime | None = None) -> RunDirectory:
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            name = f"{stem}-{stamp}" if attempt == 0 else f"{stem}-{stamp}-{attempt}"
            try:
                (output / name).mkdir()
            except FileExistsError:
                continue
            return cls(output / name)
        raise RuntimeError(f"could not create a unique run directory under {output}")

    def __truediv__(self, name: str | RunFile) -> Path:
        return self.path / _name(name)

    def subdir(self, name: str | RunFile) -> Path:
        folder = self.path / _name(name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write_text(self, name: str | RunFile, text: str) -> Path:
        return write_text(self.path / _name(name), text)

    def write_json(self, name: str | RunFile, value: Any) -> Path:
        return write_json(self.path / _name(name), value)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"


def _name(name: str | RunFile) -> str:
    return name.filename() if isinstance(name, RunFile) else name  # a patterned RunFile needs .path(run, key)

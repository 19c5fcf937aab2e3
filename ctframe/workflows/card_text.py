"""Small text helpers for the model card: safe values, numbers with intervals, generic blocks.

Everything the card prints passes through :func:`safe`, so no absolute path (which may name a person
or a site) reaches the card: a path keeps only its last part.
"""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

TO_COMPLETE = "[to be completed]"
"""What stands where the card needs a person's input (intended use, limitations, contact)."""

_ABSOLUTE = re.compile(r"(?:(?<=\s)|^|(?<=[\"'(=]))(?:/(?=[^\s/])|~/|[A-Za-z]:[\\/])[^\s\"'),;]*")


def _last_part(path: str) -> str:
    pure = PureWindowsPath(path) if re.match(r"[A-Za-z]:[\\/]", path) else PurePosixPath(path)
    return pure.name or "(a local path)"


def safe(value: Any) -> str:
    """``value`` as text with every absolute path cut to its last part (``/home/x/data`` -> ``data``)."""
    text = str(value)
    return _ABSOLUTE.sub(lambda found: _last_part(found[0]), text).replace("|", "\\|").replace("\n", " ")


def number(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return safe(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def estimate(entry: Any) -> str:
    """``{"value", "ci_low", "ci_high"}`` as ``0.700 (95% CI 0.424-0.848)``; a plain number as itself."""
    if not isinstance(entry, dict):
        return number(entry)
    text = number(entry.get("value"))
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if isinstance(low, int | float) and isinstance(high, int | float):
        text += f" (CI {number(low)}-{number(high)})"
    return text


def is_estimate(value: Any) -> bool:
    return (
        isinstance(value, dict) and "value" in value and set(value) <= {"value", "ci_low", "ci_high", "title"}
    )


def facts(block: Any, prefix: str = "", limit: int = 40) -> list[str]:
    """A block of unknown shape (a newer file's record) as ``name: value`` lines, nested keys joined with
    ``.``; long lists are counted, not printed; at most ``limit`` lines."""
    lines: list[str] = []

    def walk(value: Any, name: str) -> None:
        if len(lines) >= limit:
            return
        if is_estimate(value) or not isinstance(value, dict | list):
            lines.append(f"{name}: {estimate(value)}")
        elif isinstance(value, list):
            simple = all(not isinstance(item, dict | list) for item in value)
            lines.append(
                f"{name}: {', '.join(number(v) for v in value)}"
                if simple and len(value) <= 8
                else f"{name}: {len(value)} entries"
            )
        else:
            for key, item in value.items():
                walk(item, f"{name}.{key}" if name else str(key))

    walk(block, prefix)
    if len(lines) >= limit:
        lines.append("... (more in the file)")
    return lines


def table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table (cells made safe)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(safe(cell) for cell in row) + " |" for row in rows]
    return lines


def cite(text: str, *files: str) -> str:
    """``text (file, file)``: each item of the card names where it came from."""
    return f"{text} ({', '.join(files)})" if files else text

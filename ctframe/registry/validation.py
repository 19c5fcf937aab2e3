"""Options validated with one-line messages: the recipe file, section and key, what is wrong, and a hint
(a close key name, the option's description, where a removed option went)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ctframe.base.errors import RecipeError
from ctframe.base.options import Options


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _dotted(parts: Sequence[Any]) -> str:
    return ".".join(str(p) for p in parts)


def _format_validation_error(path: Path, section: str, error: ValidationError, schema: type[Options]) -> str:
    errors = error.errors(include_url=False)
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    where = f"{path}: [{section}] {_dotted(loc) or '(section)'}"
    kind = first["type"]
    moved = _removed_hint(schema, loc)
    if kind == "extra_forbidden" and moved:
        message = moved
    elif kind == "extra_forbidden":
        fields = _fields_at(schema, loc[:-1])
        message = f"unknown key{suggest(loc[-1], fields)}"
        if fields and not suggest(loc[-1], fields):
            message += f" (known keys: {', '.join(sorted(fields))})"
    elif kind == "missing":
        description = _field_description(schema, loc)
        message = "missing required value" + (f" ({description})" if description else "")
    else:
        message = f"{first['msg']}, got {first.get('input')!r}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{where}: {message}{more}"


def _fields_at(schema: type[Options], loc: Sequence[str]) -> list[str]:
    model: Any = schema
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _removed_hint(schema: type[Options], loc: Sequence[str]) -> str:
    model: Any = schema
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        model = field.annotation
    return (getattr(model, "removed_options", None) or {}).get(loc[-1], "") if loc else ""


def _field_description(schema: type[Options], loc: Sequence[str]) -> str:
    model: Any = schema
    field = None
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        model = field.annotation
    return (field.description or "") if field else ""


def validate_options(schema: type[Options], values: Mapping[str, Any], path: Path, section: str) -> Options:
    try:
        return schema.model_validate(dict(values), context={"base_dir": path.parent.absolute()})
    except ValidationError as error:
        raise RecipeError(_format_validation_error(path, section, error, schema)) from None

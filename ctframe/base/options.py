"""Base class and field types for component option schemas.

Every component declares its options as a subclass of :class:`Options`: a pydantic model whose
fields carry a type, a default and a one-line ``description``. The recipe section for the component
is validated against it before any work starts, and ``ctframe schema`` turns it into JSON Schema.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo


class Options(BaseModel):
    """Base for option schemas: unknown keys are errors and values are immutable once validated.

    Floats must be finite: TOML's ``inf`` and ``nan`` pass most range checks (``lr = inf`` is ``> 0``)
    and then break training, so they are refused with the other schema errors.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    removed_options: ClassVar[Mapping[str, str]] = {}
    """Keys this component no longer takes -> where the setting lives now; a recipe that still sets
    one gets that hint instead of a bare "unknown key"."""


def _resolve_against_recipe(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    try:
        value = value.expanduser()
    except RuntimeError:  # "~name" for a user this machine does not know, or no home directory at all
        user = value.parts[0]
        raise ValueError(f"{user} names no known user's home folder; write the path out in full") from None
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    # normpath folds "recipes/../data" without resolving symlinks the user chose on purpose
    return Path(os.path.normpath(Path(value).absolute()))


RecipePath = Annotated[Path, AfterValidator(_resolve_against_recipe)]
"""A filesystem path option; a relative value is resolved against the recipe's folder."""


def _names_a_path(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        validators = [m for m in get_args(annotation)[1:] if isinstance(m, AfterValidator)]
        if any(v.func is _resolve_against_recipe for v in validators):
            return True
    return any(_names_a_path(argument) for argument in get_args(annotation))


def path_fields(options: type[BaseModel]) -> tuple[str, ...]:
    """The names of the options that are local paths (``RecipePath``, optional or in a list): what an
    exported model leaves out, since a path says where data lives on one machine and may name people."""
    return tuple(
        name
        for name, info in options.model_fields.items()
        if _names_a_path(info.annotation)
        or any(isinstance(m, AfterValidator) and m.func is _resolve_against_recipe for m in info.metadata)
    )


PRECISION_MOVED = (
    "precision is no longer a backbone option: set [trainer] precision for training and "
    "[evaluation] precision for predictions"
)

CHANNELS_LAST_MOVED = (
    "channels_last is no longer a backbone option: set [trainer] channels_last for training; predictions "
    "choose the faster memory format for their device themselves"
)


class NoOptions(Options):
    """For components that take no options."""

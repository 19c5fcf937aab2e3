"""``cv.json``: what a cross-validation started with, so that ``ctframe cv --resume`` finishes exactly that.

The plan holds the recipe's text (a resume never reads the recipe file again: a fold trained after an
edit would be pooled with folds trained before it), the ``--set`` overrides and the number of folds,
sealed by the sha256 of those fields. A resume validates every field, checks the seal, and checks that
each fold folder was made from this plan, before it writes anything.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from ctframe.base.errors import RunError
from ctframe.registry.plugins import Registry
from ctframe.registry.recipe import Recipe, load_recipe
from ctframe.storage import integrity
from ctframe.storage.files import write_json
from ctframe.storage.layout import CV_FOLD, CV_PLAN, RECIPE, STATUS

FORMAT = 1
SEAL = "sha256"
_START_AGAIN = "start a new cross-validation with ctframe cv RECIPE --folds K"


@dataclass(frozen=True)
class CvPlan:
    recipe: Path
    """Where the recipe was read from: it names the recipe and places its relative paths."""
    recipe_text: str
    overrides: tuple[str, ...]
    folds: int

    def fields(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "recipe": str(self.recipe),
            "recipe_text": self.recipe_text,
            "overrides": list(self.overrides),
            "folds": self.folds,
        }

    def seal(self) -> str:
        canonical = json.dumps(self.fields(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def recipe_for(self, fold: int, registry: Registry) -> Recipe:
        """Fold ``fold``'s recipe, from the stored text (never the recipe file as it is now)."""
        overrides = [*self.overrides, f"run.cv_folds={self.folds}", f"run.cv_fold={fold}"]
        return load_recipe(self.recipe, overrides, registry=registry, text=self.recipe_text)


def write_plan(root: Path, plan: CvPlan) -> Path:
    return write_json(CV_PLAN.path(root), {**plan.fields(), SEAL: plan.seal()})


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_plan(root: Path) -> CvPlan:
    """The plan in ``root``, every field checked and its seal matched; else one :class:`RunError` line."""
    where = CV_PLAN.path(root)
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{root}: not a cross-validation folder (no {CV_PLAN.name})") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunError(f"{where}: unreadable ({' '.join(str(error).split())}); {_START_AGAIN}") from None
    if not isinstance(data, dict):
        raise RunError(f"{where}: expected a JSON object, got {_shown(data)}; {_START_AGAIN}")

    def bad(field: str, expected: str) -> RunError:
        got = "missing" if field not in data else f"got {_shown(data[field])}"
        return RunError(f"{where}: {field}: expected {expected}, {got}; {_START_AGAIN}")

    if data.get("format") != FORMAT:
        raise bad("format", f"{FORMAT} (a plan of this ctframe version)")
    folds = data.get("folds")
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise bad("folds", "a whole number of at least 2")
    if not isinstance(data.get("recipe"), str) or not data["recipe"]:
        raise bad("recipe", "the recipe file's path")
    if not isinstance(data.get("recipe_text"), str):
        raise bad("recipe_text", "the recipe's text")
    overrides = data.get("overrides")
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise bad("overrides", "a list of section.key=value strings")
    if not isinstance(data.get(SEAL), str):
        raise bad(SEAL, "the plan's hash")
    unknown = sorted(set(data) - {*CvPlan(Path(), "", (), 2).fields(), SEAL})
    if unknown:
        raise RunError(f"{where}: {unknown[0]}: not a field of a cross-validation plan; {_START_AGAIN}")
    plan = CvPlan(Path(data["recipe"]), data["recipe_text"], tuple(overrides), folds)
    if plan.seal() != data[SEAL]:
        raise RunError(
            f"{where} differs from the plan this cross-validation wrote (its {SEAL} does not match): "
            f"it was edited or damaged; restore it, or {_START_AGAIN}"
        )
    return plan


def completed(run: Path) -> bool:
    try:
        return json.loads(STATUS.path(run).read_text(encoding="utf-8")).get("state") == "completed"
    except (OSError, ValueError, AttributeError):
        return False


def check_folds(root: Path, plan: CvPlan, registry: Registry) -> None:
    """Refuse fold folders this plan did not make: one past the plan's folds, or one whose recipe is
    not the plan's; a completed fold's recorded files must be as its run wrote them."""
    for key, folder in CV_FOLD.find(root).items():
        if not key.isdigit() or int(key) >= plan.folds or CV_FOLD.filename(int(key)) != folder.name:
            raise RunError(
                f"{folder}: not a fold of this {plan.folds}-fold cross-validation ({CV_PLAN.name}); "
                "move it out of the folder"
            )
        made = RECIPE.path(folder)
        if not made.is_file():
            continue  # created, then stopped before its recipe was written: it starts again
        expected = tomllib.loads(tomli_w.dumps(plan.recipe_for(int(key), registry).to_dict()))
        try:
            found = tomllib.loads(made.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            found = None
        if found != expected:
            raise RunError(
                f"{made}: this fold was not made from the recipe and folds in {CV_PLAN.name}; "
                f"restore it, or {_START_AGAIN}"
            )
        if completed(folder):
            integrity.verify(folder)

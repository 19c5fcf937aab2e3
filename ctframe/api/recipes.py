"""For commands a plugin adds: read a recipe as ``ctframe run`` does and build its classifier."""

from ctframe.registry.recipe import Recipe, load_recipe
from ctframe.workflows.assembly import build_model, make_context

__all__ = ["Recipe", "build_model", "load_recipe", "make_context"]

"""For commands and tests a plugin adds: the registry of installed components, a recipe read as
``ctframe run`` reads it, and its classifier built."""

from ctframe.registry.plugins import Registry, build_registry, get_registry
from ctframe.registry.recipe import Recipe, load_recipe
from ctframe.workflows.assembly import build_model, make_context

__all__ = [
    "Recipe",
    "Registry",
    "build_model",
    "build_registry",
    "get_registry",
    "load_recipe",
    "make_context",
]

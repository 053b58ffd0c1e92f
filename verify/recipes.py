"""Recipes as a run reads them: the schema's checks and the task's own (verify/tasks/), in one load."""
from __future__ import annotations

from typing import Any

from core.recipe import LoadedRecipe, load_recipe
from verify.tasks import check_task

CHECKS = (check_task,)


def load(name_or_path: str, overrides: dict[str, Any] | None = None) -> LoadedRecipe:
    """Read, validate and check a recipe (`overrides`: dotted field -> value, as --set)."""
    return load_recipe(name_or_path, overrides, CHECKS)


def variant(loaded: LoadedRecipe, overrides: dict[str, Any]) -> LoadedRecipe:
    """`loaded` with more overrides, checked the same way, without reading its file again."""
    return loaded.with_overrides(overrides, CHECKS)

"""What the tasks that measure on the recipe's eval images (detection, drift) share: the step that
prepares them and the recipe check that they are given."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.recipe import Recipe
    from verify.run_state import RunState


def eval_images(state: RunState) -> None:
    from core.pixels import prepare, resolve_images

    recipe = state.recipe
    found = resolve_images(recipe.evaluate.images, state.loaded.path, "evaluate.images")
    state.images = [prepare(p, recipe.model_input, recipe.preprocess) for p in found[: recipe.evaluate.count]]


def check_eval_images(recipe: Recipe) -> None:
    task = recipe.evaluate.task
    if not recipe.evaluate.images:
        raise ValueError(f"evaluate.images|a {task} recipe needs 'images' to evaluate on")
    if recipe.evaluate.verification is not None:
        raise ValueError(f"evaluate.verification|face verification is for task: recognition, this recipe's task is "
                         f"{task}: remove the block")

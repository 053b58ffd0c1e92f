"""Tasks: what a model is for decides what a run measures. Each task is one module of this folder
(its recipe checks, its steps, how a rebuilt variant is measured, its figures, the gates it allows,
the sample sizes it reports: a `Task`, verify/tasks/task.py); TASKS maps a recipe's `evaluate.task`
to it. No other module tests the task's name: adding a task is adding a module here and naming it in
TASKS."""
from __future__ import annotations

from typing import TYPE_CHECKING

from verify.tasks import detection, drift, recognition
from verify.tasks.task import GateReaders, Task

if TYPE_CHECKING:
    from core.recipe import Recipe

__all__ = ["TASKS", "GateReaders", "Task", "check_task", "task_of"]

TASKS: dict[str, Task] = {t.name: t for t in (detection.TASK, recognition.TASK, drift.TASK)}


def task_of(recipe: Recipe) -> Task:
    return TASKS[recipe.evaluate.task]


def check_task(recipe: Recipe) -> None:
    """The recipe's task exists, allows the recipe's gates, and its own checks pass."""
    if recipe.evaluate.task not in TASKS:
        raise ValueError(f"evaluate.task|'{recipe.evaluate.task}' is not a task; use one of {', '.join(TASKS)}")
    task = TASKS[recipe.evaluate.task]
    task.check_recipe(recipe)
    for name, threshold in recipe.gates.model_dump().items():
        owner = next((t for t in TASKS.values() if name in t.gates), None)
        if threshold is not None and owner is not None and owner is not task:
            raise ValueError(f"gates.{name}|reads task: {owner.name} figures, this recipe's task is {task.name}: "
                             "gate its drift instead (min_output_cosine, min_output_sqnr_db, min_worst_layer_cosine)")

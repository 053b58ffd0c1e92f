"""Tasks: what a model is for decides what a run measures. Each task is one module of this folder
(its recipe checks, its steps, how a rebuilt variant is measured, its figures, the gates it allows,
the sample sizes it reports); TASKS maps a recipe's `evaluate.task` to it. No other module tests the
task's name: adding a task is adding a module here and naming it in TASKS."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from convert.preprocess import PreparedImage
    from convert.recipe import LoadedRecipe, Recipe
    from verify.run_state import RunState, Step
    from verify.runners import Runner

# gate name -> (what it reads, how it reads it from metrics.json)
GateReaders = dict[str, tuple[str, Callable[[dict[str, Any]], float]]]
# (run state, runner of the variant, its outputs on the eval inputs, variant key, scratch folder,
#  measure verification?) -> the task's own sections of the variant's metrics
VariantMeasure = Callable[["RunState", "Runner", list[dict[str, "np.ndarray"]], str, Path, bool], dict[str, Any]]
# (recipe, float outputs on the eval inputs, the inputs) -> {figure: value}, larger is better
PreprocessScore = Callable[["LoadedRecipe", list[dict[str, "np.ndarray"]], list["PreparedImage"]], dict[str, float]]


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    # recipe checks the schema cannot make alone: raise ValueError("field|message")
    check_recipe: Callable[[Recipe], None]
    # where the run's eval inputs come from (recognition: its face pass), and the task's own figures
    input_steps: tuple[Step, ...]
    agreement_steps: tuple[Step, ...] = ()
    gates: GateReaders = field(default_factory=dict)
    # sections a rebuilt variant (resample, hybrid candidate, fix) is measured on besides its outputs
    measure_variant: VariantMeasure | None = None
    # {figure: value} a sweep row, a before/after table or a resample shows (besides the drift figures)
    figures: Callable[[dict[str, Any]], dict[str, float]] = lambda metrics: {}
    headline: str | None = None  # the figure a sweep ranks variants by (None: the worst output cosine)
    sample_sizes: Callable[[dict[str, Any]], list[tuple[str, int]]] = lambda metrics: []
    # the float model scored with other channel orders / mean / std (None: nothing to judge them by)
    preprocess_score: PreprocessScore | None = None
    preprocess_margin: float = 0.0  # how far the recipe's score may trail the best alternative
    # the canonical ONNX checked against the recipe before any build (None: nothing to check)
    check_graph: Callable[[onnx.ModelProto, LoadedRecipe], None] | None = None


def _registry() -> dict[str, Task]:
    from verify.tasks import detection, drift, recognition

    return {t.name: t for t in (detection.TASK, recognition.TASK, drift.TASK)}


_TASKS: dict[str, Task] = {}


def tasks() -> dict[str, Task]:
    """name -> task (built on first use: the task modules import the measuring code)."""
    if not _TASKS:
        _TASKS.update(_registry())
    return _TASKS


def task_of(recipe: Recipe) -> Task:
    return tasks()[recipe.evaluate.task]


def check_task(recipe: Recipe) -> None:
    """The recipe's task exists, allows the recipe's gates, and its own checks pass."""
    known = tasks()
    if recipe.evaluate.task not in known:
        raise ValueError(f"evaluate.task|'{recipe.evaluate.task}' is not a task; use one of {', '.join(known)}")
    task = known[recipe.evaluate.task]
    task.check_recipe(recipe)
    for name, threshold in recipe.gates.model_dump().items():
        owner = next((t for t in known.values() if name in t.gates), None)
        if threshold is not None and owner is not None and owner is not task:
            raise ValueError(f"gates.{name}|reads task: {owner.name} figures, this recipe's task is {task.name}: "
                             "gate its drift instead (min_output_cosine, min_output_sqnr_db, min_worst_layer_cosine)")

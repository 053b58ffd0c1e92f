"""What a task supplies (verify/tasks/<task>.py builds one Task)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from core.pixels import PreparedImage
    from core.recipe import LoadedRecipe, Recipe
    from core.runner import Runner
    from verify.run_state import RunState, Step

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

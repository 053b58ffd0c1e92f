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
# (recipe, float outputs on the eval inputs, the inputs) -> the task's figures ({figure: value}, larger is
# better) on any draw of those inputs (their indices, repeats allowed: the check resamples them)
PreprocessScore = Callable[["LoadedRecipe", list[dict[str, "np.ndarray"]], list["PreparedImage"]],
                           Callable[["np.ndarray"], dict[str, float]]]


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    # recipe checks the schema cannot make alone: raise ValueError("field|message")
    check_recipe: Callable[[Recipe], None]
    # where the run's eval inputs come from (recognition: its face pass), and the task's own figures
    input_steps: tuple[Step, ...]
    agreement_steps: tuple[Step, ...] = ()
    late_steps: tuple[Step, ...] = ()  # after the analyses: steps that use what they found (the proposed fix)
    gates: GateReaders = field(default_factory=dict)
    # gates on unless the recipe sets them (recipe -> {gate: threshold})
    default_gates: Callable[[Recipe], dict[str, float]] = lambda recipe: {}
    run_only_gates: frozenset[str] = frozenset()  # measured on the whole run, never on a rebuilt variant
    # sections a rebuilt variant (resample, hybrid candidate, fix) is measured on besides its outputs
    measure_variant: VariantMeasure | None = None
    # the run's own task sections on what a variant is measured on, for tables of variants beside it
    as_variant: Callable[[RunState], dict[str, Any]] = lambda state: {}
    # what a variant's task figures rest on, in words ("" : the eval inputs only)
    variant_basis: Callable[[dict[str, Any]], str] = lambda metrics: ""
    # {figure: value} a sweep row, a before/after table or a resample shows (besides the drift figures)
    figures: Callable[[dict[str, Any]], dict[str, float]] = lambda metrics: {}
    headline: str | None = None  # the figure a sweep ranks variants by (None: the worst output cosine)
    sample_sizes: Callable[[dict[str, Any]], list[tuple[str, int]]] = lambda metrics: []
    # the float model scored with other channel orders / mean / std (None: nothing to judge them by)
    preprocess_score: PreprocessScore | None = None
    preprocess_margin: float = 0.0  # how far the recipe's score may trail the best alternative
    # the canonical ONNX checked against the recipe before any build (None: nothing to check)
    check_graph: Callable[[onnx.ModelProto, LoadedRecipe], None] | None = None
    report_note: str = ""  # what the report says first about runs of this task ("": nothing)

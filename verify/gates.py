"""Recipe gates -> pass/fail results, computed from a run's metrics (data, not a live model)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from core.recipe import Gates, Recipe
from verify.results import RunResults
from verify.tasks import TASKS, GateReaders, task_of


@dataclass(frozen=True)
class GateResult:
    gate: str
    metric: str
    value: float
    threshold: float
    passed: bool
    skipped: str = ""  # why the gate was not applied (it then passes: nothing it could judge)


def _min_output(figure: str) -> Callable[[dict], float]:
    """Over the outputs large enough to compare (NaN, a failed gate, when none is)."""
    return lambda m: RunResults(m).worst_output(figure)


# the gates every task has (drift); a task adds its own (verify/tasks/<task>.py, Task.gates).
# "min_*" gates need value >= threshold, "max_*" gates value <= threshold.
DRIFT_GATES: GateReaders = {
    "min_output_cosine": ("lowest per-output mean cosine, float vs quantized", _min_output("cosine")),
    "min_output_sqnr_db": ("lowest per-output mean SQNR (dB)", _min_output("sqnr_db")),
    "min_worst_layer_cosine": ("lowest per-layer single cosine (worst image)",
                               lambda m: RunResults(m).worst_layer_cosine),
}
# gates over the outputs large enough to compare; with none, not applied (README: "Small outputs")
OUTPUT_GATES = ("min_output_cosine", "min_output_sqnr_db")
ALL_TOO_SMALL = ("every output is too small to compare (float RMS below float16's smallest normal, 6.1e-5): its "
                 "figures would measure rounding, not the conversion")


def gate_readers() -> GateReaders:
    """Every gate the suite knows: drift's and each task's (a recipe's check allows only its task's)."""
    readers = dict(DRIFT_GATES)
    for task in TASKS.values():
        readers |= task.gates
    return readers


def gates_of(recipe: Recipe) -> Gates:
    """The recipe's gates, with those its task turns on by default where the recipe leaves them unset
    (e.g. calibration leakage at 0 for a recognizer evaluated on LFW)."""
    defaults = {name: value for name, value in task_of(recipe).default_gates(recipe).items()
                if getattr(recipe.gates, name) is None}
    return recipe.gates.model_copy(update=defaults) if defaults else recipe.gates


def evaluate_gates(gates: Gates, metrics: dict[str, Any]) -> list[GateResult]:
    readers = gate_readers()
    all_too_small = bool(metrics.get("outputs")) and all(o.get("too_small") for o in metrics["outputs"].values())
    results = []
    for name, threshold in gates.model_dump().items():
        if threshold is None:
            continue
        label, read = readers[name]
        if name in OUTPUT_GATES and all_too_small:
            results.append(GateResult(gate=name, metric=label, value=math.nan, threshold=threshold, passed=True,
                                      skipped=ALL_TOO_SMALL))
            continue
        try:
            value = float(read(metrics))
        except KeyError:  # the run did not measure it (e.g. layer_analysis_images: 0): the gate fails
            value = float("nan")
        within = value <= threshold if name.startswith("max_") else value >= threshold
        results.append(GateResult(gate=name, metric=label, value=value, threshold=threshold,
                                  passed=not math.isnan(value) and within))
    return results


def gate_dicts(results: list[GateResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]

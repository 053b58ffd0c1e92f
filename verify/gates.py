"""Recipe gates -> pass/fail results, computed from a run's metrics (data, not a live model)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from convert.recipe import Gates, Recipe


@dataclass(frozen=True)
class GateResult:
    gate: str
    metric: str
    value: float
    threshold: float
    passed: bool
    skipped: str = ""  # why the gate was not applied (it then passes: nothing it could judge)


def _min_output(key: str) -> Callable[[dict], float]:
    """Over the outputs large enough to compare (NaN, a failed gate, when none is)."""
    return lambda m: min((o[key]["mean"] for o in m["outputs"].values() if not o.get("too_small")), default=math.nan)


# gate name -> (what it reads, how to read it from metrics.json). "min_*" gates need
# value >= threshold, "max_*" gates value <= threshold.
GATE_METRICS: dict[str, tuple[str, Callable[[dict[str, Any]], float]]] = {
    "min_output_cosine": ("lowest per-output mean cosine, float vs quantized", _min_output("cosine")),
    "min_output_sqnr_db": ("lowest per-output mean SQNR (dB)", _min_output("sqnr_db")),
    "min_worst_layer_cosine": ("lowest per-layer single cosine (worst image)",
                               lambda m: m["layers"]["worst_single_cos"]),
    "min_foreground_cosine": ("lowest box/landmark cosine on face anchors (float score > threshold)",
                              lambda m: min(m["detection"]["foreground_cosine"].values())),
    "min_detection_match_rate": ("share of float faces matched by quantized (IoU)",
                                 lambda m: m["detection"]["match_rate"]),
    "min_quantized_accuracy": ("quantized verification accuracy (k-fold mean)",
                               lambda m: m["verification"]["quantized"]["accuracy"]["mean"]),
    "max_accuracy_drop": ("float minus quantized verification accuracy",
                          lambda m: m["verification"]["accuracy_drop"]),
    "min_embedding_cosine": ("mean cosine of float vs quantized embeddings",
                             lambda m: m["verification"]["embedding_drift"]["cosine_mean"]),
    "max_calibration_overlap": ("images both calibrated on and evaluated (content hash): leakage",
                                lambda m: m["verification"]["calibration_leakage"]["overlap"]),
}
RUN_ONLY_GATES = {"max_calibration_overlap"}  # what the whole run measures, not a rebuilt variant (verify.sensitivity)
LEAKAGE_DATASETS = ("lfw",)  # evaluated on these, calibration leakage is gated at 0 unless the recipe says otherwise


def gates_of(recipe: Recipe) -> Gates:
    """The recipe's gates, with the leakage gate on (0) for a recognizer evaluated on LFW."""
    verification = recipe.evaluate.verification
    if verification and verification.dataset.name in LEAKAGE_DATASETS and recipe.gates.max_calibration_overlap is None:
        return recipe.gates.model_copy(update={"max_calibration_overlap": 0})
    return recipe.gates


# gates over the outputs large enough to compare; with none, not applied (README: "Small outputs")
OUTPUT_GATES = ("min_output_cosine", "min_output_sqnr_db")
ALL_TOO_SMALL = ("every output is too small to compare (float RMS below float16's smallest normal, 6.1e-5): its "
                 "figures would measure rounding, not the conversion")


def evaluate_gates(gates: Gates, metrics: dict[str, Any]) -> list[GateResult]:
    results = []
    for name, threshold in gates.model_dump().items():
        if threshold is None:
            continue
        label, read = GATE_METRICS[name]
        if name in OUTPUT_GATES and metrics.get("outputs") and all(o.get("too_small") for o in metrics["outputs"].values()):
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

"""Recipe gates -> pass/fail results, computed from a run's metrics (data, not a live model)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from convert.recipe import Gates


@dataclass(frozen=True)
class GateResult:
    gate: str
    metric: str
    value: float
    threshold: float
    passed: bool


def _min_output(key: str) -> Callable[[dict], float]:
    """Over the outputs large enough to compare (NaN, a failed gate, when none is)."""
    return lambda m: min((o[key]["mean"] for o in m["outputs"].values() if not o.get("too_small")), default=math.nan)


def _first_dir(row: dict[str, Any]) -> float:
    """DIR at the first FAR (NaN, a failed gate, when the run had no unknown probes to measure it on)."""
    return row["dir_at_far"][0]["dir"] if row["dir_at_far"] else math.nan


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
    "min_rank1": ("quantized rank-1 identification (gallery and probes quantized)",
                  lambda m: m["identification"]["settings"]["quantized/quantized"]["rank1"]),
    "max_rank1_drop": ("float minus quantized rank-1 identification", lambda m: m["identification"]["rank1_drop"]),
    "max_cross_enrolment_drop": ("rank-1 drop when a float-enrolled gallery is searched with the quantized model",
                                 lambda m: m["identification"]["cross_enrolment_drop"]),
    "min_dir_at_far": ("quantized open-set DIR at the first identification FAR (1%)",
                       lambda m: _first_dir(m["identification"]["settings"]["quantized/quantized"])),
}


def evaluate_gates(gates: Gates, metrics: dict[str, Any]) -> list[GateResult]:
    results = []
    for name, threshold in gates.model_dump().items():
        if threshold is None:
            continue
        label, read = GATE_METRICS[name]
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

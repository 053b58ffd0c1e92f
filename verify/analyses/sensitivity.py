"""Which layers cost the most, and the smallest float16 set that brings the recipe inside its goal.

Each candidate (the worst layers by accuracy_analysis' single cosine) is rebuilt alone in
float16 with hybrid quantization and scored by the worst output SQNR on the eval inputs; the
fix then adds the best-ranked layers one at a time, rebuilding and re-measuring the task
metrics (detection agreement, verification accuracy) until the goal's gates pass.
"""
from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from convert.hybrid import HybridBase, hybrid_base, hybrid_build, proposed_layers
from convert.pipeline import Artifacts
from convert.rknn_build import Toolkit
from core.errors import RkverifyError
from core.recipe import Gates, LoadedRecipe
from verify.analyses.variants import Measure, WholeSet, basis, fix_on_every_pair, run_as_variants_are_measured, variant_measure
from verify.engines.runners import RknnRunner
from verify.gates import evaluate_gates, gate_readers
from verify.results import RunResults, figures
from verify.tasks import task_of

if TYPE_CHECKING:
    from verify.run_state import RunState

COMPUTE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}  # op names as accuracy_analysis prints them
MIN_GAIN_DB = 0.05  # below this a candidate's effect is build-to-build noise, not a recovery
# gates a rebuilt variant can be measured on without a new accuracy_analysis
LAYER_GATES = {"min_worst_layer_cosine"}

def worst_output_sqnr(metrics: dict[str, Any]) -> float:
    return min(o.sqnr_db for o in RunResults(metrics).outputs.values())


def goal_of(loaded: LoadedRecipe) -> Gates:
    recipe = loaded.recipe
    goal = recipe.analysis.fix_goal or recipe.gates
    return goal.model_copy(update={name: None for name in LAYER_GATES | task_of(recipe).run_only_gates})


def measure_build(loaded: LoadedRecipe, toolkit: Toolkit, measure: Measure, variant: str, log_file: Path,
                  size: bool = False) -> dict[str, Any]:
    """Measure a live rebuilt variant on the simulator like the run itself, then release it;
    with `size`, also what its exported .rknn weighs."""
    try:
        runner = RknnRunner(lambda: toolkit.rknn, loaded.recipe.outputs, "NCHW", log_file)
        runner.activate()
        with tempfile.TemporaryDirectory(prefix="rkverify-variant-") as scratch:
            metrics = measure(runner, variant, Path(scratch))
            if size:  # what the .rknn would weigh (the user builds it from the pasted block)
                exported = Path(scratch) / "variant.rknn"
                toolkit.call("export_rknn", "", "check free disk space",
                             lambda: toolkit.rknn.export_rknn(str(exported)))
                metrics["rknn_bytes"] = exported.stat().st_size
        return metrics
    finally:
        toolkit.rknn.release()


def _measure_variant(loaded: LoadedRecipe, base: HybridBase, layers: list[str], measure: Measure,
                     log_file: Path, size: bool = False) -> dict[str, Any]:
    return measure_build(loaded, hybrid_build(loaded, base, layers, log_file), measure,
                         "hybrid-" + "+".join(sorted(layers)), log_file, size)


def _item(rows: pd.DataFrame) -> tuple[str, list[str], float]:
    return (" + ".join(f"{r.layer} ({r.op})" for r in rows.itertuples()), list(rows["layer"]),
            float(rows["single_cos_worst"].min()))


def analyse(loaded: LoadedRecipe, artifacts: Artifacts, layers: pd.DataFrame, quantized: dict[str, Any],
            measure: Measure, log_file: Path, whole_set: WholeSet | None = None) -> dict[str, Any]:
    """Sensitivity ranking and (when asked) the proposed fix; `quantized` is the plain build's metrics."""
    recipe = loaded.recipe
    cfg = recipe.analysis
    base = hybrid_base(loaded, artifacts.onnx, artifacts.calibration_list, artifacts.model_dir / "hybrid", log_file)
    eligible = layers[layers["layer"].isin(base.quantized_layers)].copy()
    # a candidate is a block: a compute layer with the activation/add layers after it. Floating a
    # conv alone leaves its activation's output in int8 and measured worse than not floating it
    # (MobileFaceNet: every Conv alone in float16 cost 2.4 dB); the toolkit's own proposals pair them too.
    eligible["block"] = eligible["op"].isin(COMPUTE_OPS).cumsum()
    # the worst layers alone (single cosine) and where the accumulated error is largest (entire
    # cosine: the heads, when drift piles up towards the outputs)
    worst = pd.concat([eligible.nsmallest(cfg.sensitivity_layers, column)
                       for column in ("single_cos_worst", "entire_cos_worst")])
    worst_blocks = worst["block"].drop_duplicates()
    items = [_item(eligible[eligible["block"] == b]) for b in worst_blocks]
    proposal_error = None
    if cfg.toolkit_proposal:
        try:
            proposal = hybrid_base(loaded, artifacts.onnx, artifacts.calibration_list,
                                   artifacts.model_dir / "hybrid", log_file, proposal=True)
        except RkverifyError as exc:  # the toolkit's search crashes on some graphs (RetinaFace, 2.5.0)
            proposal_error = exc.problem
        else:
            proposed = proposed_layers(proposal)
            items.append((f"rknn-toolkit2's own proposal ({len(proposed)} layers)", proposed,
                          float(eligible.loc[eligible["layer"].isin(proposed), "single_cos_worst"].min())))
    baseline = worst_output_sqnr(quantized)
    ranking = []
    for label, float_layers, single_cos in items:
        # ranked by output SQNR on the eval inputs: no dataset pass per candidate
        variant = _measure_variant(loaded, base, float_layers, partial(measure, verification=False), log_file)
        ranking.append({"candidate": label, "float_layers": float_layers, "single_cos_worst": single_cos,
                        "worst_output_sqnr_db": worst_output_sqnr(variant),
                        "gain_db": worst_output_sqnr(variant) - baseline,
                        "worst_output_cosine": min(o["cosine"]["mean"] for o in variant["outputs"].values())})
    ranking.sort(key=lambda r: r["gain_db"], reverse=True)
    result: dict[str, Any] = {"metric": "worst output SQNR (dB), eval inputs", "baseline_db": baseline,
                              "ranking": ranking, "toolkit_proposal_error": proposal_error}
    if cfg.propose_fix:
        result["fix"] = propose_fix(loaded, artifacts, base, ranking, quantized, measure, log_file, whole_set)
    return result


def propose_fix(loaded: LoadedRecipe, artifacts: Artifacts, base: HybridBase, ranking: list[dict[str, Any]],
                quantized: dict[str, Any], measure: Measure, log_file: Path,
                whole_set: WholeSet | None = None) -> dict[str, Any]:
    recipe = loaded.recipe
    goal = goal_of(loaded)
    before = evaluate_gates(goal, quantized)
    fix: dict[str, Any] = {"goal": {g.gate: g.threshold for g in before},
                           "before": {g.gate: g.value for g in before},
                           "rknn_bytes_before": artifacts.built.provenance["artifact_bytes"],
                           "quantized_layers": len(base.quantized_layers),
                           "gate_labels": {g.gate: gate_readers()[g.gate][0] for g in before}}
    if all(g.passed for g in before):
        return fix | {"status": "already within the goal: nothing to keep in float16", "float_layers": []}
    helpful = [r for r in ranking if r["gain_db"] >= MIN_GAIN_DB]
    if not helpful:
        return fix | {"status": f"none of the {len(ranking)} candidates recovers {MIN_GAIN_DB} dB of output SQNR "
                      "in float16: hybrid quantization is not the remedy here; try quantization.algorithm mmse, "
                      "a better calibration set, or float16", "float_layers": []}
    # greedy, best first; a candidate stays only if the set with it scores better (gains do not add up:
    # the toolkit re-quantizes a float layer's neighbours)
    chosen: list[str] = []
    best_sqnr, after, variant = worst_output_sqnr(quantized), before, {}
    for candidate in helpful:
        trial = list(dict.fromkeys(chosen + candidate["float_layers"]))
        if len(trial) > recipe.analysis.max_fix_layers:
            continue
        trial_metrics = _measure_variant(loaded, base, trial, measure, log_file, size=True)
        trial_gates = evaluate_gates(goal, trial_metrics)
        if worst_output_sqnr(trial_metrics) > best_sqnr or all(g.passed for g in trial_gates):
            chosen, best_sqnr, after, variant = trial, worst_output_sqnr(trial_metrics), trial_gates, trial_metrics
        if all(g.passed for g in after):
            break
    if not chosen:
        too_big = [c for c in helpful if len(c["float_layers"]) > recipe.analysis.max_fix_layers]
        beyond = (f" within analysis.max_fix_layers ({recipe.analysis.max_fix_layers}); larger and not tried: "
                  + ", ".join(f"{c['candidate']} (+{c['gain_db']:.1f} dB)" for c in too_big)) if too_big else ""
        return fix | {"status": f"no candidate set improved on the quantized build{beyond}", "float_layers": []}
    passed = all(g.passed for g in after)
    if passed and len(chosen) > 1:  # the shortest prefix that still meets the goal (bisection)
        low, high = 1, len(chosen)
        while low < high:
            middle = (low + high) // 2
            trial_metrics = _measure_variant(loaded, base, chosen[:middle], measure, log_file, size=True)
            trial_gates = evaluate_gates(goal, trial_metrics)
            if all(g.passed for g in trial_gates):
                high, after, variant = middle, trial_gates, trial_metrics
            else:
                low = middle + 1
        chosen = chosen[:high]
    if whole_set is not None:  # ranked on a subset; the proposal is re-measured on every pair
        fix["whole_set"] = whole_set(chosen)
    return fix | {
        "status": "meets the goal" if passed else
        f"does not meet the goal with {len(chosen)} layer(s) in float16: try more layers, another "
        "algorithm (mmse) or a better calibration set",
        "float_layers": chosen, "passed": passed,
        "after": {g.gate: g.value for g in after},
        "task_before": figures(quantized, task_of(recipe)), "task_after": figures(variant, task_of(recipe)),
        "rknn_bytes_after": variant["rknn_bytes"],
        "recipe_block": yaml.safe_dump({"quantization": {"hybrid": {"float_layers": chosen}}}, sort_keys=False),
    }


def step(state: RunState) -> None:
    assert state.layers is not None  # the per-layer step ran: the candidates come from its table
    whole_set = fix_on_every_pair(state) if state.face_pass else None
    # candidates and the fix are measured on the analysis subset: "before" is the run on that subset too
    quantized = run_as_variants_are_measured(state)
    state.metrics["sensitivity"] = analyse(state.loaded, state.artifacts, state.layers, quantized,
                                           variant_measure(state),
                                           state.log_file, whole_set)
    state.metrics["sensitivity"]["basis"] = basis(state, quantized)

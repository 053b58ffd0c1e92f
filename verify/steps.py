"""The steps of one verification run, named in one place and run in this order.

Every step has one signature, `step(state: RunState) -> None`: it reads what earlier steps left in
the state (eval inputs, each engine's outputs, the layer table) and writes its own section of the
metrics. A step says when it applies and which live runners it needs; `run_steps` activates them
for it, times it under its title and names it in the one line a failure gets. Each analysis is a
module of its own (verify/<module>.py, function `step`); the steps that only run engines are here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from convert.frontends import native_runner
from convert.preprocess import prepare, resolve_images
from convert.progress import step as announce
from verify import (
    board_run,
    calibration_audit,
    calibration_stability,
    detection_agreement,
    layers,
    preprocess_check,
    sensitivity,
    stages,
)
from verify.cache import SHARED_CACHE_DIR
from verify.compare import agreement_per_input, input_sensitivity, summarise_outputs
from verify.gates import evaluate_gates, gate_dicts
from verify.identification import step as identification
from verify.recognition import FacePass, verification_metrics
from verify.run_models import recognizer_models, rknn_runner
from verify.run_state import RunState
from verify.runners import active, run_all
from verify.samples import sample_sizes


@dataclass(frozen=True)
class Step:
    title: str  # the console line and timings key; {inputs}, {native}, ... filled in from the state
    applies: Callable[[RunState], bool]
    run: Callable[[RunState], None]
    runners: tuple[str, ...] = ()  # live runners it needs active: "float", "quantized", "detector", "native"


def verify_faces(state: RunState) -> None:
    """The face pass over every image of the evaluated pairs (in the workers), then the pairs'
    figures; the eval inputs of the later steps are the first aligned faces."""
    models = recognizer_models(state.loaded, state.artifacts, state.runners["float"][0], state.runners["quantized"][0])
    face_pass = FacePass(state.loaded, models, state.aligner, SHARED_CACHE_DIR, state.log_file, state.workers,
                         state.ray_address)
    state.metrics["verification"], state.images = verification_metrics(
        state.loaded, face_pass, state.run_dir, faces_for_drift=state.recipe.evaluate.count,
        calibration=state.artifacts.calibration)
    state.face_pass = face_pass


def eval_images(state: RunState) -> None:
    recipe = state.recipe
    found = resolve_images(recipe.evaluate.images, state.loaded.path, "evaluate.images")
    state.images = [prepare(p, recipe.model_input, recipe.preprocess) for p in found[: recipe.evaluate.count]]


def engine_outputs(engine: str, speed_key: str | None = None) -> Callable[[RunState], None]:
    """The step that runs `engine`'s (active) runner on every eval input."""

    def run(state: RunState) -> None:
        state.outputs[engine], seconds = run_all(state.runners[engine][0], state.images)
        if speed_key:
            state.metrics["speed"][speed_key] = round(seconds * 1e3, 2)

    return run


def float16_outputs(state: RunState) -> None:
    assert state.artifacts.fp16 is not None
    runner = rknn_runner(state.artifacts.fp16, state.recipe, state.log_file)
    with active(runner):
        state.outputs["float16"], _ = run_all(runner, state.images)


def output_agreement(state: RunState) -> None:
    per_image = agreement_per_input(state.recipe.outputs, state.outputs["float"], state.outputs["quantized"])
    paths = [im.path for im in state.images]
    state.metrics |= {"eval_images": [str(p) for p in paths],
                      "outputs": summarise_outputs(per_image),
                      "per_image": [{"image": str(p), "outputs": o} for p, o in zip(paths, per_image)],
                      "input_sensitivity_cosine": input_sensitivity(state.outputs["float"])}


def gates(state: RunState) -> None:
    state.metrics["sample_sizes"] = sample_sizes(state.metrics)
    results = evaluate_gates(state.recipe.gates, state.metrics)
    state.metrics["gates"] = gate_dicts(results)
    state.metrics["passed"] = all(g.passed for g in results)


def always(_: RunState) -> bool:
    return True


def task(name: str) -> Callable[[RunState], bool]:
    return lambda state: state.recipe.evaluate.task == name


STEPS: tuple[Step, ...] = (
    Step("face verification, float vs quantized", task("recognition"), verify_faces, ("float", "quantized", "detector")),
    Step("face identification (1:N search), float vs quantized vs cross-enrolled",
         lambda s: s.recipe.evaluate.task == "recognition" and s.recipe.evaluate.identification.enabled,
         identification.step, ("float", "quantized", "detector")),
    Step("prepare eval images", lambda s: s.recipe.evaluate.task != "recognition", eval_images),
    Step("float on ONNX Runtime, {inputs} inputs", always, engine_outputs("float", "onnxruntime_ms_per_image"),
         ("float",)),
    Step("quantized on the RKNN simulator, {inputs} inputs", always,
         engine_outputs("quantized", "simulator_ms_per_image"), ("quantized",)),
    Step("float on {native} (the source framework), {inputs} inputs", lambda s: "native" in s.runners,
         engine_outputs("native"), ("native",)),
    Step("float16 build on the RKNN simulator, {inputs} inputs", lambda s: s.artifacts.fp16 is not None,
         float16_outputs),
    Step("output agreement, float vs quantized", always, output_agreement),
    Step("detection agreement", task("detection"), detection_agreement.step),
    Step("calibration audit", always, calibration_audit.step),
    Step("calibration stability: {resamples} builds on random halves",
         lambda s: bool(s.recipe.analysis.calibration_resamples) and s.on_simulator, calibration_stability.step,
         ("float", "detector")),
    # drift: no task metric to judge the alternatives by
    Step("preprocessing contract check (float model, alternative channel order / mean / std)",
         lambda s: s.recipe.analysis.preprocess_check and s.recipe.evaluate.task != "drift", preprocess_check.step),
    Step("per-layer accuracy_analysis on {layer_images} images", lambda s: bool(min(
        s.recipe.evaluate.layer_analysis_images, len(s.images))), layers.step),
    Step("sensitivity: {sensitivity_layers} layers in float16, one at a time{fix}",
         lambda s: bool(s.recipe.analysis.sensitivity_layers) and s.layers is not None and s.on_simulator,
         sensitivity.step, ("float", "detector")),
    Step("face identification: plain build vs the proposed fix", lambda s: bool(identification.proposed_fix(s)),
         identification.builds_step, ("float", "quantized", "detector")),
    Step("quantized on board {device}", lambda s: s.recipe.target.runtime == "board", board_run.step),
    Step("stage attribution", lambda s: len(stages.chain_of(s)) > 2, stages.step),
    Step("gates", always, gates),
)


def title_fields(state: RunState) -> dict[str, Any]:
    recipe = state.recipe
    return {"inputs": len(state.images), "native": state.native_name,
            "resamples": recipe.analysis.calibration_resamples,
            "layer_images": min(recipe.evaluate.layer_analysis_images, len(state.images)),
            "sensitivity_layers": recipe.analysis.sensitivity_layers,
            "fix": " + proposed fix" if recipe.analysis.propose_fix else "", "device": recipe.target.device_id or ""}


def run_steps(state: RunState, steps: tuple[Step, ...] = STEPS) -> None:
    """Every step that applies, in order."""
    native = native_runner(state.loaded, state.artifacts.source)
    if native is not None:
        state.runners["native"], state.native_name = [native], native.name
    for each in steps:
        if not each.applies(state):
            continue
        live = [runner for role in each.runners for runner in state.runners.get(role, [])]
        with announce(each.title.format(**title_fields(state)), state.timings), active(*live):
            each.run(state)

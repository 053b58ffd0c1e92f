"""The steps of one verification run, named in one place and run in this order.

Every step has one signature, `step(state: RunState) -> None`: it reads what earlier steps left in
the state (eval inputs, each engine's outputs, the layer table) and writes its own section of the
metrics. A step says when it applies and which live runners it needs; `run_steps` activates them
for it, times it under its title and names it in the one line a failure gets. Each analysis is a
module of its own (verify/analyses/<module>.py, function `step`); the steps that only run engines are here,
and the recipe's task (verify/tasks/) places its own steps where `task_steps` stands.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from convert.frontends import native_runner
from convert.progress import step as announce
from core.compare import agreement_per_input, input_sensitivity, summarise_outputs
from verify.analyses import board_run, calibration_audit, calibration_stability, layers, preprocess_check, sensitivity, stages
from verify.engines.run_models import rknn_runner
from verify.engines.runners import active, run_all
from verify.gates import evaluate_gates, gate_dicts, gates_of
from verify.run_state import RunState, Step, always
from verify.samples import sample_sizes
from verify.tasks import task_of


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
    task = task_of(state.recipe)
    state.metrics["sample_sizes"] = sample_sizes(state.metrics, task)
    results = evaluate_gates(gates_of(state.recipe), state.metrics)
    state.metrics["gates"] = gate_dicts(results)
    state.metrics["passed"] = all(g.passed for g in results)


def task_steps(kind: str) -> Step:
    """A place in the list for the recipe's task's own steps of `kind` (input_steps, agreement_steps)."""
    def run(state: RunState) -> None:
        for each in getattr(task_of(state.recipe), kind):
            run_step(state, each)

    return Step("", always, run)


STEPS: tuple[Step, ...] = (
    task_steps("input_steps"),  # the eval inputs: images, or a recognizer's aligned faces
    Step("float on ONNX Runtime, {inputs} inputs", always, engine_outputs("float", "onnxruntime_ms_per_image"),
         ("float",)),
    Step("quantized on the RKNN simulator, {inputs} inputs", always,
         engine_outputs("quantized", "simulator_ms_per_image"), ("quantized",)),
    Step("float on {native} (the source framework), {inputs} inputs", lambda s: "native" in s.runners,
         engine_outputs("native"), ("native",)),
    Step("float16 build on the RKNN simulator, {inputs} inputs", lambda s: s.artifacts.fp16 is not None,
         float16_outputs),
    Step("output agreement, float vs quantized", always, output_agreement),
    task_steps("agreement_steps"),
    Step("calibration audit", always, calibration_audit.step),
    Step("calibration stability: {resamples} builds on random halves",
         lambda s: bool(s.recipe.analysis.calibration_resamples) and s.on_simulator, calibration_stability.step,
         ("float", "detector")),
    Step("preprocessing contract check (float model, alternative channel order / mean / std)",
         lambda s: s.recipe.analysis.preprocess_check and task_of(s.recipe).preprocess_score is not None,
         preprocess_check.step),
    Step("per-layer accuracy_analysis on {layer_images} images", lambda s: bool(min(
        s.recipe.evaluate.layer_analysis_images, len(s.images))), layers.step),
    Step("sensitivity: {sensitivity_layers} layers in float16, one at a time{fix}",
         lambda s: bool(s.recipe.analysis.sensitivity_layers) and s.layers is not None and s.on_simulator,
         sensitivity.step, ("float", "detector")),
    task_steps("late_steps"),
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


def run_step(state: RunState, each: Step) -> None:
    """One step, if it applies: its runners active, timed under its title (a step without a title
    only places other steps)."""
    if not each.applies(state):
        return
    if not each.title:
        each.run(state)
        return
    live = [runner for role in each.runners for runner in state.runners.get(role, [])]
    with announce(each.title.format(**title_fields(state)), state.timings), active(*live):
        each.run(state)


def run_steps(state: RunState, steps: tuple[Step, ...] = STEPS) -> None:
    """Every step that applies, in order."""
    native = native_runner(state.loaded, state.artifacts.source)
    if native is not None:
        state.runners["native"], state.native_name = [native], native.name
    for each in steps:
        run_step(state, each)

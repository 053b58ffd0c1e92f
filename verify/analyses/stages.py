"""Stage attribution: where along native framework -> ONNX float32 -> RKNN float16 -> RKNN
quantized -> board the outputs start to drift."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.compare import agreement_per_input, summarise_outputs
from core.recipe import Recipe

if TYPE_CHECKING:
    from verify.run_state import RunState


def stage_attribution(recipe: Recipe, chain: list[tuple[str, list[dict]]]) -> dict[str, Any]:
    """Agreement of each neighbouring stage of `chain` (label, outputs per input).

    The stage that loses the most cosine (worst output) is where the drift starts; outputs too small
    to compare rank nothing (their cosines are noise), and with none left no stage is named.
    """
    stages: list[dict[str, Any]] = []
    for (before, a), (after, b) in zip(chain, chain[1:]):
        outputs = summarise_outputs(agreement_per_input(recipe.outputs, a, b))
        losses = [1 - o["cosine"]["mean"] for o in outputs.values() if not o["too_small"]]
        stages.append({"from": before, "to": after, "outputs": outputs, "cosine_loss": max(losses, default=None)})
    ranked = [st for st in stages if st["cosine_loss"] is not None]
    worst = max(ranked, key=lambda st: float(st["cosine_loss"]))["to"] if ranked else None
    return {"stages": stages, "drift_starts_at": worst}


def chain_of(state: RunState) -> list[tuple[str, list[dict]]]:
    """The run's engines in conversion order, with the label each stage is reported under."""
    recipe = state.recipe
    labels = {"native": f"{recipe.source.framework} (native {state.native_name})",
              "float": "ONNX Runtime float32",
              "float16": "RKNN float16 (compiler, no quantization)",
              "quantized": f"RKNN {recipe.quantization.dtype} (quantization)",
              "board": f"board {recipe.target.platform} (runtime)"}
    return [(label, state.outputs[engine]) for engine, label in labels.items() if engine in state.outputs]


def step(state: RunState) -> None:
    state.metrics["stages"] = stage_attribution(state.recipe, chain_of(state))

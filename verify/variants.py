"""How a rebuilt variant of the run's model (a calibration resample, a hybrid candidate, the
proposed fix) is measured: on the run's own inputs and task figures, so its figures compare with
the run's."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from convert.artifacts import sha256_bytes
from convert.recipe import LoadedRecipe
from verify.compare import agreement_per_input, summarise_outputs
from verify.detection_agreement import detection_agreement
from verify.recognition import Model, choose_pairs, pair_subset, verification_metrics
from verify.run_state import RunState
from verify.runners import Runner, SimulatorSpec, run_all


class Measure(Protocol):
    """measure(runner, variant_key, scratch_dir) -> metrics with "outputs" (+ "detection"/"verification",
    the latter on the recipe's fixed subset of pairs; `verification=False` skips it)."""

    def __call__(self, runner: Runner, variant: str, scratch: Path, verification: bool = True) -> dict[str, Any]: ...


# whole_set(float_layers) -> verification figures of that hybrid variant on every pair (None: no dataset)
WholeSet = Callable[[list[str]], dict[str, Any] | None]


def variant_measure(state: RunState) -> Measure:
    """Verification on the recipe's fixed subset of pairs: analyses rank many variants, they must
    not each cost a whole dataset."""
    loaded, recipe, images, float_out, face_pass = state.loaded, state.recipe, state.images, state.outputs["float"], \
        state.face_pass
    cfg = recipe.evaluate.verification
    subset = pair_subset(choose_pairs(cfg, loaded.path)[0], cfg.analysis_pairs) if cfg and face_pass else None

    def measure(runner: Runner, variant: str, scratch: Path, verification: bool = True) -> dict[str, Any]:
        out, _ = run_all(runner, images)
        metrics: dict[str, Any] = {"outputs": summarise_outputs(agreement_per_input(recipe.outputs, float_out, out))}
        if recipe.evaluate.task == "detection":
            metrics["detection"] = detection_agreement(loaded, images, float_out, out, scratch)
        if face_pass is not None and verification:
            key = sha256_bytes(f"{face_pass.recognizers['quantized'].key}:{variant}".encode())
            variant_pass = face_pass.with_quantized(Model(key, None, runner))
            metrics["verification"], _ = verification_metrics(loaded, variant_pass, scratch, subset)
        return metrics

    return measure


def hybrid_model(state: RunState, float_layers: list[str]) -> tuple[LoadedRecipe, Model]:
    """The run's recipe with `float_layers` kept in float16, and its model for the face pass (built
    in the workers; its embeddings cached under a key of the plain build and the layers)."""
    loaded, artifacts, face_pass = state.loaded, state.artifacts, state.face_pass
    assert face_pass is not None
    recipe = loaded.recipe
    quantization = recipe.quantization.model_copy(
        update={"hybrid": recipe.quantization.hybrid.model_copy(update={"float_layers": float_layers})})
    variant = loaded.model_copy(update={"recipe": recipe.model_copy(update={"quantization": quantization})})
    key = sha256_bytes(json.dumps([face_pass.recognizers["quantized"].key, sorted(float_layers)]).encode())
    return variant, Model(key, SimulatorSpec(variant, artifacts.onnx, artifacts.calibration_list))


def fix_on_every_pair(state: RunState) -> WholeSet:
    """Verification of a hybrid variant on every pair, its builds and embeddings in the workers."""
    face_pass = state.face_pass
    assert face_pass is not None

    def whole_set(float_layers: list[str]) -> dict[str, Any]:
        variant, model = hybrid_model(state, float_layers)
        with tempfile.TemporaryDirectory(prefix="rkverify-fix-") as scratch:
            figures, _ = verification_metrics(variant, face_pass.with_quantized(model), Path(scratch))
        return {k: figures[k] for k in ("quantized", "accuracy_drop", "quantized_accuracy_at_float_threshold",
                                        "embedding_drift", "pass")} | {"flipped_pairs": len(figures["flipped_pairs"])}

    return whole_set

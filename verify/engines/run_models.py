"""A run's models: live runners for this process, and the specs a worker process rebuilds them from."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from convert.build import RknnBuild
from convert.pipeline import Artifacts
from core.artifacts import sha256_bytes
from core.recipe import FLOAT16, LoadedRecipe, Recipe
from core.runner import Runner
from verify.engines.runners import OnnxSpec, RknnRunner, SimulatorSpec
from verify.face.recognition import Model

if TYPE_CHECKING:
    from verify.run_state import RunState


def rknn_runner(build: RknnBuild, recipe: Recipe, log_file: Path) -> RknnRunner:
    """Simulator runner of an in-process build."""
    return RknnRunner(lambda: build.rknn, recipe.outputs, recipe.model_input.layout, log_file=log_file)


def quantized_spec(loaded: LoadedRecipe, artifacts: Artifacts) -> SimulatorSpec:
    """How a worker process rebuilds the run's quantized model (float16 recipes: no calibration)."""
    quantized = loaded.recipe.quantization.dtype != FLOAT16
    return SimulatorSpec(loaded, artifacts.onnx, artifacts.calibration_list if quantized else None)


def recognizer_models(loaded: LoadedRecipe, artifacts: Artifacts, float_runner: Runner,
                      quant_runner: Runner) -> dict[str, Model]:
    """The run's float and quantized models: live in this process, and how a worker builds them."""
    return {"float": Model(artifacts.float_key, OnnxSpec(artifacts.onnx, loaded.recipe), float_runner),
            "quantized": Model(artifacts.quant_key, quantized_spec(loaded, artifacts), quant_runner)}


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

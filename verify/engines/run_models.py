"""A run's models: live runners for this process, and the specs a worker process rebuilds them from."""
from __future__ import annotations

from pathlib import Path

from convert.build import RknnBuild
from convert.pipeline import Artifacts
from core.recipe import FLOAT16, LoadedRecipe, Recipe
from core.runner import Runner
from verify.engines.runners import OnnxRuntimeRunner, OnnxSpec, RknnRunner, SimulatorSpec
from verify.face.recognition import Detector, Model


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


def detector_of(detector: tuple[LoadedRecipe, Artifacts] | None, log_file: Path) -> Detector | None:
    """The aligning detector's float (ONNX Runtime) and quantized (simulator) models, not yet active."""
    if detector is None:
        return None
    loaded, artifacts = detector
    recipe = loaded.recipe
    float_runner = OnnxRuntimeRunner(artifacts.onnx, recipe.model_input, recipe.preprocess)
    quantized = None
    if artifacts.rknn is not None:
        quantized = Model(artifacts.quant_key, quantized_spec(loaded, artifacts),
                          rknn_runner(artifacts.rknn, recipe, log_file))
    return Detector(recipe, Model(artifacts.float_key, OnnxSpec(artifacts.onnx, recipe), float_runner), quantized)

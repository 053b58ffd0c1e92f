"""Source framework -> canonical ONNX, and the framework's own forward as the float reference.

onnx / pytorch-onnx sources are ONNX already. keras-pb goes through tf2onnx (measured against
rknn-toolkit2's load_tensorflow, which bundles tf2onnx itself: the same float agreement and
the same RKNN outputs, 5-6 s slower per build); tflite through tf2onnx's TFLite reader (the
toolkit's own load_tflite would skip the ONNX the float reference runs); mxnet through MXNet's
own exporter. Every frontend's ONNX is checked against the framework's forward on real images
before building.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from convert.source import SourceFiles
from core.compare import cosine
from core.errors import RkverifyError
from core.pixels import normalize
from core.recipe import LoadedRecipe
from core.runner import Runner

# native -> ONNX must be a lossless translation; float32 rounding stays above this
MIN_FRONTEND_COSINE = 0.999


@dataclass(frozen=True)
class Frontend:
    """One source framework: how its model becomes ONNX and how it runs on its own framework."""

    exporter: str | None  # what makes the ONNX (None: the source is ONNX already)
    # (recipe, source files, ONNX path to write) -> (the ONNX, {graph parameter name: stored name})
    to_onnx: Callable[[LoadedRecipe, SourceFiles, Path], tuple[Path, dict[str, str]]] | None = None
    native_runner: Callable[[LoadedRecipe, SourceFiles], Runner] | None = None


def _keras_pb_onnx(loaded: LoadedRecipe, files: SourceFiles, out: Path) -> tuple[Path, dict[str, str]]:
    from convert.frontends import tensorflow_pb

    return tensorflow_pb.to_onnx(files.model, loaded, out), {}


def _keras_pb_runner(loaded: LoadedRecipe, files: SourceFiles) -> Runner:
    from convert.frontends.tensorflow_pb import TensorflowRunner

    return TensorflowRunner(files.model, loaded.recipe)


def _tflite_onnx(loaded: LoadedRecipe, files: SourceFiles, out: Path) -> tuple[Path, dict[str, str]]:
    from convert.frontends import tflite_file

    return tflite_file.to_onnx(files.model, loaded, out), {}


def _tflite_runner(loaded: LoadedRecipe, files: SourceFiles) -> Runner:
    from convert.frontends.tflite_file import TfliteRunner

    return TfliteRunner(files.model, loaded.recipe)


def _mxnet_onnx(loaded: LoadedRecipe, files: SourceFiles, out: Path) -> tuple[Path, dict[str, str]]:
    from convert.frontends import mxnet_symbol

    return mxnet_symbol.to_onnx(files, loaded, out)


def _mxnet_runner(loaded: LoadedRecipe, files: SourceFiles) -> Runner:
    from convert.frontends.mxnet_symbol import MxnetRunner

    return MxnetRunner(files, loaded)


# source.framework -> its frontend (the frameworks' own modules import only when a recipe needs them)
FRONTENDS: dict[str, Frontend] = {
    "onnx": Frontend(None),
    "pytorch-onnx": Frontend(None),
    "keras-pb": Frontend("tf2onnx", _keras_pb_onnx, _keras_pb_runner),
    "tflite": Frontend("tf2onnx.convert.from_tflite", _tflite_onnx, _tflite_runner),
    "mxnet": Frontend("mxnet.onnx.export_model", _mxnet_onnx, _mxnet_runner),
}


def source_to_onnx(loaded: LoadedRecipe, files: SourceFiles, out_path: Path) -> tuple[Path, dict[str, str]]:
    """The ONNX the canonical graph starts from (the source itself, or a frontend's conversion), and
    the parameters a frontend loaded under another name than the graph gives ({graph name: stored name})."""
    frontend = FRONTENDS[loaded.recipe.source.framework]
    return frontend.to_onnx(loaded, files, out_path) if frontend.to_onnx else (files.model, {})


def native_runner(loaded: LoadedRecipe, files: SourceFiles) -> Runner | None:
    """A runner of the source on its own framework, or None for ONNX sources."""
    frontend = FRONTENDS[loaded.recipe.source.framework]
    return frontend.native_runner(loaded, files) if frontend.native_runner else None


def check_against_native(loaded: LoadedRecipe, files: SourceFiles, onnx_path: Path,
                         inputs: list[np.ndarray]) -> dict[str, float]:
    """Worst cosine per output, framework vs canonical ONNX on `inputs` (model-input pixels).

    Refuses the conversion when an output disagrees: a frontend that mistranslates an op
    would otherwise be blamed on quantization later.
    """
    recipe = loaded.recipe
    runner = native_runner(loaded, files)
    if runner is None:
        return {}
    options = ort.SessionOptions()
    options.log_severity_level = 3  # tf2onnx's Resize attributes draw deprecation warnings
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    spec = recipe.model_input
    worst = {name: 1.0 for name in recipe.outputs}
    runner.activate()
    try:
        for pixels in inputs:
            native = runner.infer(pixels)
            converted = session.run(recipe.outputs, {spec.name: normalize(pixels, recipe.preprocess, "NCHW")})
            for name, value in zip(recipe.outputs, converted):
                if native[name].shape != value.shape:
                    raise RkverifyError(loaded.path, "outputs", f"output '{name}' is {native[name].shape} on "
                                        f"{recipe.source.framework} but {value.shape} in the ONNX",
                                        "cut the graph before ops whose output size depends on the data (NMS)")
                worst[name] = min(worst[name], cosine(native[name], value))
    finally:
        runner.deactivate()
    bad = {n: c for n, c in worst.items() if c < MIN_FRONTEND_COSINE}
    if bad:
        framework = recipe.source.framework
        raise RkverifyError(loaded.path, "outputs", f"the ONNX made by {FRONTENDS[framework].exporter} disagrees with "
                            f"{framework} itself: cosine {', '.join(f'{n} {c:.4f}' for n, c in bad.items())}",
                            "cut the graph before the op that converts wrongly (set outputs to an earlier tensor)")
    return worst

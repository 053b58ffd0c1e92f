"""Source framework -> canonical ONNX, and the framework's own forward as the float reference.

onnx / pytorch-onnx sources are ONNX already. keras-pb goes through tf2onnx (measured against
rknn-toolkit2's load_tensorflow, which bundles tf2onnx itself: the same float agreement and
the same RKNN outputs, 5-6 s slower per build); tflite through tf2onnx's TFLite reader (the
toolkit's own load_tflite would skip the ONNX the float reference runs); mxnet through MXNet's
own exporter. Every frontend's ONNX is checked against the framework's forward on real images
before building.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from convert.errors import RkverifyError
from convert.preprocess import normalize
from convert.recipe import LoadedRecipe
from convert.source import SourceFiles
from verify.compare import cosine

# native -> ONNX must be a lossless translation; float32 rounding stays above this
MIN_FRONTEND_COSINE = 0.999
EXPORTER = {"keras-pb": "tf2onnx", "tflite": "tf2onnx.convert.from_tflite", "mxnet": "mxnet.onnx.export_model"}


def source_to_onnx(loaded: LoadedRecipe, files: SourceFiles, out_path: Path) -> tuple[Path, dict[str, str]]:
    """The ONNX the canonical graph starts from (the source itself, or a frontend's conversion), and
    the parameters a frontend loaded under another name than the graph gives ({graph name: stored name})."""
    framework = loaded.recipe.source.framework
    if framework == "keras-pb":
        from convert.frontends import tensorflow_pb

        return tensorflow_pb.to_onnx(files.model, loaded, out_path), {}
    if framework == "tflite":
        from convert.frontends import tflite_file

        return tflite_file.to_onnx(files.model, loaded, out_path), {}
    if framework == "mxnet":
        from convert.frontends import mxnet_symbol

        return mxnet_symbol.to_onnx(files, loaded, out_path)
    return files.model, {}


def native_runner(loaded: LoadedRecipe, files: SourceFiles):
    """A runner (verify.runners.Runner) of the source on its own framework, or None for ONNX sources."""
    framework = loaded.recipe.source.framework
    if framework == "keras-pb":
        from convert.frontends.tensorflow_pb import TensorflowRunner

        return TensorflowRunner(files.model, loaded.recipe)
    if framework == "tflite":
        from convert.frontends.tflite_file import TfliteRunner

        return TfliteRunner(files.model, loaded.recipe)
    if framework == "mxnet":
        from convert.frontends.mxnet_symbol import MxnetRunner

        return MxnetRunner(files, loaded)
    return None


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
        raise RkverifyError(loaded.path, "outputs", f"the ONNX made by {EXPORTER[framework]} disagrees with "
                            f"{framework} itself: cosine {', '.join(f'{n} {c:.4f}' for n, c in bad.items())}",
                            "cut the graph before the op that converts wrongly (set outputs to an earlier tensor)")
    return worst

"""Float TFLite flatbuffer -> NCHW ONNX with tf2onnx's TFLite path, and the TFLite interpreter's
own forward as the float reference. Integer-quantized TFLite files are refused: their float
model is gone, so nothing could say what the RKNN build's quantization costs."""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from convert.frameworks import import_tensorflow, import_tf2onnx
from convert.frontends.generated_names import renumber
from convert.graph_names import GraphNames, check_names
from core.artifacts import atomic_path
from core.errors import RkverifyError
from core.pixels import normalize
from core.recipe import PROJECT_ROOT, LoadedRecipe, Recipe

OPSET = 13
QUANTIZED_DTYPES = (np.int8, np.uint8, np.int16)


def interpreter(path: Path, keep_tensors: bool = False) -> Any:
    """The loaded model; `keep_tensors` keeps inner tensors readable after invoke (a recipe may cut there)."""
    tf = import_tensorflow()
    with warnings.catch_warnings():  # TF 2.19 announces the interpreter's move to ai_edge_litert
        warnings.simplefilter("ignore")
        try:
            model = tf.lite.Interpreter(model_path=str(path), experimental_preserve_all_tensors=keep_tensors)
        except ValueError as exc:  # not a TFLite flatbuffer
            raise RkverifyError(path, "source", f"not a TFLite model ({str(exc).splitlines()[0]})",
                                "give the .tflite file the TFLite converter wrote") from None
    model.allocate_tensors()
    return model


def refuse_quantized(path: Path, model: Any) -> None:
    """One line when any weight or activation tensor is stored as an integer with a scale."""
    for tensor in model.get_tensor_details():
        if tensor["dtype"] in QUANTIZED_DTYPES and len(tensor["quantization_parameters"]["scales"]):
            kind = np.dtype(tensor["dtype"]).name
            raise RkverifyError(path, "source.path", f"integer-quantized TFLite (tensor '{tensor['name']}' is {kind}): "
                                "it has no float reference to compare the RKNN build against",
                                "give the float .tflite (TFLiteConverter without optimizations or representative "
                                "dataset), or the Keras model it came from as a frozen .pb (framework: keras-pb)")


def check_tflite_names(path: Path, model: Any, loaded: LoadedRecipe) -> None:
    """The recipe's input is one of the model's inputs at its shape; its outputs are tensors."""
    inputs: dict[str, list[int] | None] = {d["name"]: [int(x) for x in d["shape_signature"]]
                                         for d in model.get_input_details()}
    tensors = [d["name"] for d in model.get_tensor_details()]
    check_names(GraphNames(inputs, tensors, path.name), loaded, loaded.recipe.input)


def to_onnx(path: Path, loaded: LoadedRecipe, out_path: Path) -> Path:
    """tf2onnx from the flatbuffer, given only the recipe's input: inputs nothing on the way to
    the outputs reads (a training-only label input) are left out of the ONNX, and any that is
    read makes the conversion fail here instead of leaving the NPU a second input."""
    recipe = loaded.recipe
    model = interpreter(path)
    # name the user's file, not the verified copy under models/
    refuse_quantized(PROJECT_ROOT / recipe.source.path if recipe.source.path else path, model)
    check_tflite_names(path, model, loaded)
    tf2onnx = import_tf2onnx()
    spec = recipe.input
    try:
        onnx_model, _ = tf2onnx.convert.from_tflite(str(path), input_names=[spec.name], output_names=recipe.outputs,
                                                    opset=OPSET, inputs_as_nchw=[spec.name])
    except Exception as exc:  # tf2onnx raises ValueError / RuntimeError naming the op it lacks
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RkverifyError(loaded.path, "outputs", f"tf2onnx could not convert the TFLite model: {detail}",
                            "cut the model before that op (outputs: an earlier tensor)") from None
    extra = [i.name for i in onnx_model.graph.input if i.name != spec.name]
    if extra:
        raise RkverifyError(loaded.path, "outputs", f"the outputs also depend on input(s) {', '.join(extra)}",
                            "the NPU build takes one input: cut the model at tensors that need only "
                            f"'{spec.name}'")
    with atomic_path(out_path) as tmp:
        onnx.save(renumber(onnx_model), str(tmp))
    return out_path


class TfliteRunner:
    """The float .tflite on TensorFlow's TFLite interpreter (CPU). Inputs the recipe does not name
    are fed zeros: the ONNX made from the file proved the outputs do not read them."""

    name = "tflite"

    def __init__(self, path: Path, recipe: Recipe) -> None:
        self.path, self.recipe = path, recipe
        self.model: Any = None
        self.inference_time = 0.0

    def activate(self) -> None:
        self.model = interpreter(self.path, keep_tensors=True)
        for detail in self.model.get_input_details():
            if detail["name"] != self.recipe.input.name:
                self.model.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))

    def infer(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """`pixels`: model input (NCHW, not normalised), as every runner takes it."""
        nhwc = normalize(pixels, self.recipe.preprocess, "NCHW").transpose(0, 2, 3, 1)
        by_name = {d["name"]: d["index"] for d in self.model.get_tensor_details()}
        self.model.set_tensor(by_name[self.recipe.input.name], np.ascontiguousarray(nhwc, dtype=np.float32))
        start = time.perf_counter()
        self.model.invoke()
        self.inference_time = time.perf_counter() - start
        return {name: self.model.get_tensor(by_name[name]).copy() for name in self.recipe.outputs}

    def deactivate(self) -> None:
        self.model = None

"""Frozen TensorFlow GraphDef (.pb, as Keras users export it) -> NCHW ONNX with tf2onnx, and the
graph's own forward on TensorFlow as the float reference."""
from __future__ import annotations

import time
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
from core.recipe import LoadedRecipe, Recipe

OPSET = 13


def read_graph(path: Path) -> Any:
    tf = import_tensorflow()
    graph = tf.compat.v1.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf DecodeError
        raise RkverifyError(path, "source", f"not a frozen TensorFlow GraphDef ({exc})",
                            "export with convert_variables_to_constants_v2 and write graph_def.SerializeToString()") from None
    return graph


def check_tf_names(graph: Any, loaded: LoadedRecipe) -> None:
    """Input must be a Placeholder tensor, outputs existing tensors, shapes NHWC like the placeholder's."""
    placeholders = {f"{n.name}:0": [d.size for d in n.attr["shape"].shape.dim] or None
                    for n in graph.node if n.op == "Placeholder"}
    tensors = [f"{n.name}:0" for n in graph.node if n.op not in ("Const", "NoOp")]
    check_names(GraphNames(placeholders, tensors, "the graph", input_noun="placeholder tensor",
                           shape_noun="placeholder", shape_fix="give [1, H, W, C] matching the placeholder"),
                loaded, loaded.recipe.input)


def to_onnx(pb_path: Path, loaded: LoadedRecipe, out_path: Path) -> Path:
    """tf2onnx at the recipe's fixed shape, cut at its outputs, input transposed to NCHW, its own names
    renumbered (the same .pb gives the same ONNX bytes: convert/frontends/generated_names.py)."""
    graph = read_graph(pb_path)
    check_tf_names(graph, loaded)
    tf2onnx = import_tf2onnx()
    recipe = loaded.recipe
    spec = recipe.input
    try:
        model, _ = tf2onnx.convert.from_graph_def(graph, input_names=[spec.name], output_names=recipe.outputs,
                                                  opset=OPSET, shape_override={spec.name: spec.shape},
                                                  inputs_as_nchw=[spec.name])
    except Exception as exc:  # tf2onnx raises ValueError / RuntimeError naming the op it lacks
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RkverifyError(loaded.path, "outputs", f"tf2onnx could not convert the graph: {detail}",
                            "cut the graph before that op (outputs: an earlier tensor, e.g. before post-processing)"
                            ) from None
    with atomic_path(out_path) as tmp:
        onnx.save(renumber(model), str(tmp))
    return out_path


class TensorflowRunner:
    """The frozen graph on TensorFlow (CPU), pruned to the recipe's input and outputs."""

    name = "tensorflow"

    def __init__(self, pb_path: Path, recipe: Recipe) -> None:
        self.pb_path, self.recipe = pb_path, recipe
        self.function: Any = None
        self.tf: Any = None
        self.inference_time = 0.0

    def activate(self) -> None:
        self.tf = tf = import_tensorflow()
        graph = read_graph(self.pb_path)
        wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph, name=""), [])
        element = wrapped.graph.as_graph_element
        self.function = wrapped.prune(element(self.recipe.input.name), [element(n) for n in self.recipe.outputs])

    def infer(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """`pixels`: model input (NCHW, not normalised), as every runner takes it."""
        nhwc = normalize(pixels, self.recipe.preprocess, "NCHW").transpose(0, 2, 3, 1)
        start = time.perf_counter()
        outputs = self.function(self.tf.constant(nhwc))
        self.inference_time = time.perf_counter() - start
        return {name: value.numpy() for name, value in zip(self.recipe.outputs, outputs)}

    def deactivate(self) -> None:
        self.function = None

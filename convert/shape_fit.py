"""The input size a graph runs at, when the recipe's does not: a model with a free (dynamic) height and
width can still hold a size-bound layer (a Flatten into a fully connected layer, a fixed Reshape), and
the recipe's shape then fails deep in onnxsim or the toolkit with a message about neither. Trying
common sizes on ONNX Runtime finds one that runs, so the error can name the value that works."""
from __future__ import annotations

import copy

import numpy as np
import onnx

from core.recipe import InputSpec

SIDES = (112, 96, 128, 160, 224, 64, 48, 32, 24, 12, 256, 320, 480, 640)


def runs_at(model: onnx.ModelProto, name: str, shape: list[int]) -> bool:
    """Whether ONNX Runtime runs `model` fed zeros of `shape` at input `name`."""
    import onnxruntime as ort

    trial = copy.deepcopy(model)
    for graph_input in trial.graph.input:
        if graph_input.name == name:
            dims = graph_input.type.tensor_type.shape.dim
            for dim, value in zip(dims, shape):
                dim.Clear()
                dim.dim_value = value
    del trial.graph.value_info[:]  # stale inner shapes would be checked against the new size
    for output in trial.graph.output:
        output.type.tensor_type.ClearField("shape")
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(trial.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, {name: np.zeros(shape, np.float32)})
    except Exception:  # onnxruntime's Fail / InvalidArgument / RuntimeException: this size does not run
        return False
    return True


def size_that_runs(model: onnx.ModelProto, spec: InputSpec) -> list[int] | None:
    """A shape (in the recipe's layout) at which the NCHW `model` runs, or None; the recipe's channel
    count and batch are kept, square sides tried from the face models' usual sizes up."""
    n, c, _, _ = spec.shape if spec.layout == "NCHW" else [spec.shape[0], spec.shape[3], *spec.shape[1:3]]
    for side in SIDES:
        if runs_at(model, spec.name, [n, c, side, side]):
            return [n, c, side, side] if spec.layout == "NCHW" else [n, side, side, c]
    return None

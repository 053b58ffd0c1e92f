"""Source ONNX -> canonical float ONNX: check names, cut at the recipe's outputs, fix shapes, simplify."""
from __future__ import annotations

import difflib
from pathlib import Path

import onnx
import onnx.utils
import onnxsim

from convert.artifacts import atomic_path
from convert.errors import RkverifyError
from convert.recipe import LoadedRecipe


def tensor_names(model: onnx.ModelProto) -> list[str]:
    """Every tensor name a user could pick as an input or output, graph order."""
    names = [i.name for i in model.graph.input]
    for node in model.graph.node:
        names.extend(o for o in node.output if o)
    return names


def closest(name: str, candidates: list[str], n: int = 5) -> list[str]:
    ranked = difflib.get_close_matches(name, candidates, n=n, cutoff=0.0)
    return ranked or candidates[:n]


def check_names(model: onnx.ModelProto, loaded: LoadedRecipe) -> None:
    recipe = loaded.recipe
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i.name for i in model.graph.input if i.name not in initializers]
    spec = recipe.model_input
    if spec.name not in graph_inputs:
        raise RkverifyError(loaded.path, "inputs.0.name", f"no input named '{spec.name}' in the model",
                            f"use one of: {', '.join(closest(spec.name, graph_inputs))}")
    every = tensor_names(model)
    for index, name in enumerate(recipe.outputs):
        if name not in every:
            raise RkverifyError(loaded.path, f"outputs.{index}", f"no tensor named '{name}' in the model",
                                f"closest real names: {', '.join(closest(name, every))}")


def _fix_input_shapes(model: onnx.ModelProto, loaded: LoadedRecipe) -> None:
    spec = loaded.recipe.model_input
    graph_input = next(i for i in model.graph.input if i.name == spec.name)
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != len(spec.shape):
        raise RkverifyError(loaded.path, "inputs.0.shape",
                            f"model input '{spec.name}' has rank {len(dims)}, recipe gives {spec.shape}",
                            f"give a shape of rank {len(dims)}")
    for dim, size in zip(dims, spec.shape):
        if dim.HasField("dim_value") and dim.dim_value != size:
            raise RkverifyError(loaded.path, "inputs.0.shape",
                                f"model input '{spec.name}' is fixed at {[d.dim_value for d in dims]}",
                                "use the model's own shape (or its layout: NCHW vs NHWC)")
        dim.Clear()
        dim.dim_value = size


def prepare_onnx(source: Path, loaded: LoadedRecipe, out_path: Path) -> Path:
    """Write the canonical float graph to `out_path` (atomically) and return it."""
    recipe = loaded.recipe
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise RkverifyError(source, "source", f"not a readable ONNX model ({exc})", "check the source file") from None
    check_names(model, loaded)
    # exporters stamp the IR version of the onnx package they ran with (11 for onnx 1.18), which
    # ONNX Runtime 1.20 refuses; the lowest IR version the opsets need is equally valid
    model.ir_version = min(model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import)))
    graph_outputs = [o.name for o in model.graph.output]
    if graph_outputs != recipe.outputs:
        # the recipe cuts the graph (e.g. before post-processing) or reorders outputs
        model = onnx.utils.Extractor(model).extract_model([recipe.model_input.name], recipe.outputs)
    _fix_input_shapes(model, loaded)
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RkverifyError(source, "source", "onnxsim could not verify the simplified graph",
                            "check the model runs in ONNX Runtime at the recipe's input shape")
    onnx.checker.check_model(simplified)
    with atomic_path(out_path) as tmp:
        onnx.save(simplified, str(tmp))
    return out_path

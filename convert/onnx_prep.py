"""Source ONNX -> canonical float ONNX: check names, cut at the recipe's outputs, fix shapes, simplify."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import onnx.utils
import onnxsim

from convert.graph_names import GraphNames, check_names
from convert.shape_fit import runs_at, size_that_runs
from core.artifacts import atomic_path
from core.errors import RkverifyError
from core.recipe import InputSpec, LoadedRecipe


def tensor_names(model: onnx.ModelProto) -> list[str]:
    """Every tensor name a user could pick as an input or output, graph order."""
    names = [i.name for i in model.graph.input]
    for node in model.graph.node:
        names.extend(o for o in node.output if o)
    return names


def check_onnx_names(model: onnx.ModelProto, loaded: LoadedRecipe) -> None:
    initializers = {i.name for i in model.graph.initializer}
    inputs: dict[str, list[int] | None] = {i.name: None for i in model.graph.input if i.name not in initializers}
    check_names(GraphNames(inputs, tensor_names(model), "the model", input_noun="input named"), loaded,
                loaded.recipe.model_input)


ONNX_FRAMEWORKS = ("onnx", "pytorch-onnx")  # used as they are; frontends' ONNX takes NCHW already
FLOAT_INPUTS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}


def refuse_quantized(model: onnx.ModelProto, loaded: LoadedRecipe) -> None:
    """A model already quantized has no float reference: every figure rkverify gives would compare
    the quantized model with itself. Said up front, not as a calibration failure after a build."""
    ops = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS or n.op_type.startswith("QLinear")})
    if ops:
        raise RkverifyError(loaded.path, "source", f"the model is already quantized ({', '.join(ops)} nodes): there "
                            "is no float reference to measure a conversion against", "give the float model it was "
                            "quantized from (rkverify quantizes it with the toolkit and measures what that costs)")
    initializers = {i.name for i in model.graph.initializer}
    for graph_input in (i for i in model.graph.input if i.name not in initializers):
        elem_type = graph_input.type.tensor_type.elem_type
        if elem_type not in FLOAT_INPUTS:
            kind = onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
            raise RkverifyError(loaded.path, "source", f"model input '{graph_input.name}' is {kind}, not float: a "
                                "quantized model (or one fed raw bytes) has no float reference to measure against",
                                "give the float model (a float32 input; its mean/std go in the recipe's preprocess)")


def source_input(loaded: LoadedRecipe) -> InputSpec:
    """The input as the ONNX handed to prepare_onnx has it: the recipe's for ONNX sources, NCHW for frontends'."""
    recipe = loaded.recipe
    return recipe.input if recipe.source.framework in ONNX_FRAMEWORKS else recipe.model_input


def _fix_input_shapes(model: onnx.ModelProto, loaded: LoadedRecipe, spec: InputSpec) -> None:
    graph_input = next(i for i in model.graph.input if i.name == spec.name)
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != len(spec.shape):
        raise RkverifyError(loaded.path, "inputs.0.shape",
                            f"model input '{spec.name}' has rank {len(dims)}, recipe gives {spec.shape}",
                            f"give a shape of rank {len(dims)}")
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if any(f is not None and f != size for f, size in zip(fixed, spec.shape)):
        shown = "[" + ", ".join("?" if f is None else str(f) for f in fixed) + "]"
        raise RkverifyError(loaded.path, "inputs.0.shape", f"model input '{spec.name}' is {shown}, the recipe gives "
                            f"{spec.shape} {spec.layout}", _shape_fix(fixed, spec))
    for dim, size in zip(dims, spec.shape):
        dim.Clear()
        dim.dim_value = size


def _shape_fix(fixed: list[int | None], spec: InputSpec) -> str:
    """One fix that works: the recipe's shape in the model's layout, when that is what differs."""
    n, a, b, c = spec.shape
    other = ("NHWC", [n, b, c, a]) if spec.layout == "NCHW" else ("NCHW", [n, c, a, b])
    if all(f is None or f == size for f, size in zip(fixed, other[1])):
        transpose = (" (rkverify puts a transpose in front, so the canonical ONNX and the .rknn take NCHW)"
                     if other[0] == "NHWC" else "")
        return f"the model takes {other[0]}: give shape {other[1]} and layout: {other[0]}{transpose}"
    own = [size if f is None else f for f, size in zip(fixed, spec.shape)]
    return f"give the model's own shape ({own}, in its layout)"


def nchw_input(model: onnx.ModelProto, spec: InputSpec) -> onnx.ModelProto:
    """Put a Transpose in front of an NHWC input, so the canonical ONNX (and the .rknn) take NCHW:
    rknn-toolkit2 applies mean/std on dim 1 of an ONNX input. The input keeps its name."""
    graph = model.graph
    inner = f"{spec.name}__nhwc"
    for node in graph.node:
        node.input[:] = [inner if name == spec.name else name for name in node.input]
    graph_input = next(i for i in graph.input if i.name == spec.name)
    elem_type = graph_input.type.tensor_type.elem_type
    graph.input.remove(graph_input)
    n, h, w, c = spec.shape
    graph.input.insert(0, onnx.helper.make_tensor_value_info(spec.name, elem_type, [n, c, h, w]))
    graph.node.insert(0, onnx.helper.make_node("Transpose", [spec.name], [inner], name=f"{spec.name}_nchw_to_nhwc",
                                               perm=[0, 2, 3, 1]))
    return model


# the recipe's task checks the canonical graph before any build (e.g. a detector's anchor layout)
GraphCheck = Callable[[onnx.ModelProto, LoadedRecipe], None]


def shape_error(model: onnx.ModelProto, loaded: LoadedRecipe, detail: str) -> RkverifyError | None:
    """When the graph does not run at the recipe's input shape (ONNX Runtime says), the error naming a
    shape it runs at; None when the shape is not the cause."""
    spec = loaded.recipe.input
    if runs_at(model, spec.name, loaded.recipe.model_input.shape):
        return None
    working = size_that_runs(model, spec)
    fix = (f"use shape: {working} (the graph runs at that size; give the size the model was trained at if you know it)"
           if working else "give the input size the model was trained at")
    return RkverifyError(loaded.path, "inputs.0.shape", f"the graph does not run at shape {spec.shape} ({detail})", fix)


def prepare_onnx(source: Path, loaded: LoadedRecipe, out_path: Path, check_graph: GraphCheck | None = None) -> Path:
    """Write the canonical float graph to `out_path` (atomically) and return it."""
    recipe = loaded.recipe
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise RkverifyError(source, "source", f"not a readable ONNX model ({exc})", "check the source file") from None
    refuse_quantized(model, loaded)
    check_onnx_names(model, loaded)
    # exporters stamp the IR version of the onnx package they ran with (11 for onnx 1.18), which
    # ONNX Runtime 1.20 refuses; the lowest IR version the opsets need is equally valid
    model.ir_version = min(model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import)))
    graph_outputs = [o.name for o in model.graph.output]
    if graph_outputs != recipe.outputs:
        # the recipe cuts the graph (e.g. before post-processing) or reorders outputs
        # onnx's Extractor reads the cut tensors' types from value_info, which many exporters leave out
        model = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(model)).extract_model(
            [recipe.model_input.name], recipe.outputs)
    spec = source_input(loaded)
    _fix_input_shapes(model, loaded, spec)
    if spec.layout == "NHWC":
        model = nchw_input(model, spec)
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # onnxsim raises bare RuntimeErrors, e.g. when the graph cannot run at this shape
        error = shape_error(model, loaded, " ".join(str(exc).split())[:200])
        if error is None:
            raise
        raise error from None
    if not ok:
        raise RkverifyError(source, "source", "onnxsim could not verify the simplified graph",
                            "check the model runs in ONNX Runtime at the recipe's input shape")
    onnx.checker.check_model(simplified)
    if not runs_at(simplified, recipe.model_input.name, recipe.model_input.shape):  # onnxsim lets some through
        raise shape_error(model, loaded, "ONNX Runtime cannot run the graph at it") or RkverifyError(
            source, "source", "ONNX Runtime cannot run the canonical graph", "check the model runs in ONNX Runtime")
    if check_graph is not None:
        check_graph(simplified, loaded)
    with atomic_path(out_path) as tmp:
        onnx.save(simplified, str(tmp))
    return out_path

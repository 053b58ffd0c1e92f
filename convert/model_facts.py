"""What a model file says about itself, read from its graph: one plain description for every framework.

ONNX (onnx), frozen TensorFlow GraphDef (.pb), TFLite (tf.lite's interpreter) and MXNet (symbol JSON +
params). Inputs (name as a recipe gives it, shape with None for a dynamic dimension, layout), outputs in
the graph's order, op counts, and the preprocessing the graph itself applies at its input (a leading
Sub/Mul/Div, a BatchNormalization, MXNet's _minusscalar/_mulscalar, a TFLite input's quantization).
Nothing is built or run on the toolkit here; `rkverify inspect` prints this, `rkverify init` writes it.
"""
from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import sha256_file
from core.errors import RkverifyError


@dataclass
class TensorFacts:
    name: str  # as a recipe names it (TF graphs: tensor 'x:0'; TFLite and MXNet: the plain name)
    shape: list[int | None]  # None: dynamic in the file
    dtype: str = "float32"
    quantization: tuple[float, int] | None = None  # TFLite (scale, zero_point) of an integer tensor

    @property
    def size(self) -> int | None:
        dims = [d for d in self.shape[1:] if d is not None]
        return int(np.prod(dims)) if len(dims) == len(self.shape) - 1 else None


@dataclass
class GraphPreprocess:
    """Normalisation the graph applies to its input itself: x_model = (x - mean) / std."""

    mean: list[float]
    std: list[float]
    ops: list[str]  # what it was read from, e.g. ["_minusscalar0 (127.5)", "_mulscalar0 (0.0078125)"]


@dataclass
class ModelFacts:
    path: Path
    framework: str  # a recipe's source.framework: onnx, keras-pb, tflite, mxnet
    sha256: str
    inputs: list[TensorFacts]
    outputs: list[TensorFacts]
    op_counts: dict[str, int]
    params: Path | None = None
    params_sha256: str | None = None
    graph_preprocess: GraphPreprocess | None = None
    notes: list[str] = field(default_factory=list)

    def layout(self, tensor: TensorFacts) -> str:
        """NHWC for TensorFlow graphs; otherwise from where the 3 (or 1) channels sit."""
        if self.framework in ("keras-pb", "tflite"):
            return "NHWC"
        shape = tensor.shape
        if len(shape) == 4 and shape[1] not in (1, 3) and shape[3] in (1, 3):
            return "NHWC"
        return "NCHW"


def read_model(path: Path) -> ModelFacts:
    """The facts of a model file; the framework is told by the file name (and its first bytes)."""
    if not path.is_file():
        raise RkverifyError(path, "", "model file not found", "give the path of an .onnx, frozen .pb, .tflite or "
                            "MXNet -symbol.json file")
    name = path.name.lower()
    if name.endswith(".onnx"):
        return _read_onnx(path)
    if name.endswith(".tflite"):
        return _read_tflite(path)
    if name.endswith(".pb"):
        return _read_graphdef(path)
    if name.endswith("-symbol.json") or name.endswith(".json"):
        return _read_mxnet(path)
    raise RkverifyError(path, "", "not a model format rkverify reads", "give an .onnx, a frozen TensorFlow .pb, a "
                        "float .tflite or an MXNet <prefix>-symbol.json (with its <prefix>-NNNN.params beside it)")


# -- the input's affine normalisation, read through a chain of elementwise ops with constant operands --

def _affine_chain(first_ops: list[tuple[str, str, np.ndarray | None]]) -> GraphPreprocess | None:
    """`first_ops`: the ops the input flows through, in order: (kind, label, constant), kind one of
    sub/add/mul/div/affine (constant = (a, b) stacked for 'affine'). Returns (x - mean) / std."""
    a, b = np.ones(3), np.zeros(3)
    used = []
    for kind, label, const in first_ops:
        if const is None or const.size not in (1, 3, 6):
            break
        if kind == "affine":
            scale, shift = const[:3], const[3:]
            a, b = a * scale, b * scale + shift
        else:
            c = np.broadcast_to(const.astype(np.float64).ravel(), (3,))
            if kind == "sub":
                b = b - c
            elif kind == "add":
                b = b + c
            elif kind == "mul":
                a, b = a * c, b * c
            elif kind == "div":
                a, b = a / c, b / c
            else:
                break
        used.append(label)
    if not used or np.any(a == 0):
        return None
    return GraphPreprocess(mean=[round(float(v), 6) for v in -b / a], std=[round(float(v), 6) for v in 1 / a],
                          ops=used)


# -- ONNX --

ONNX_KINDS = {"Sub": "sub", "Add": "add", "Mul": "mul", "Div": "div"}


def _read_onnx(path: Path) -> ModelFacts:
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path), load_external_data=False)
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # shapes are a help, not a need: keep what the file states
        pass
    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t) if node.attribute[0].t.dims or \
                node.attribute[0].t.raw_data else np.array(node.attribute[0].f)
    known = {vi.name: vi for vi in [*graph.value_info, *graph.output, *graph.input]}

    def facts(name: str) -> TensorFacts:
        vi = known.get(name)
        if vi is None or not vi.type.tensor_type.HasField("shape"):
            return TensorFacts(name, [])
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name
        return TensorFacts(name, dims, dtype)

    inputs = [facts(i.name) for i in graph.input if i.name not in consts]
    chain: list[tuple[str, str, np.ndarray | None]] = []
    current = inputs[0].name if inputs else ""
    for _ in range(4):
        users = [n for n in graph.node if current in n.input]
        if len(users) != 1:
            break
        node = users[0]
        if node.op_type in ("Transpose", "Cast"):
            current = node.output[0]
            continue
        if node.op_type in ONNX_KINDS:
            other = [consts.get(i) for i in node.input if i != current]
            chain.append((ONNX_KINDS[node.op_type], f"{node.op_type} {node.name or node.output[0]}",
                          other[0] if other else None))
        elif node.op_type == "BatchNormalization":
            found = [consts.get(i) for i in node.input[1:5]]
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            if any(v is None or np.size(v) != 3 for v in found):
                break
            scale, bias, mean, var = (np.asarray(v, np.float64) for v in found)
            factor = scale / np.sqrt(var + eps)
            chain.append(("affine", f"BatchNormalization {node.name or node.output[0]}",
                          np.concatenate([factor, bias - mean * factor])))
        else:
            break
        current = node.output[0]
    outputs = [facts(o.name) for o in graph.output]
    notes: list[str] = []
    if inputs and len(inputs[0].shape) == 4 and any(None in t.shape[1:] or not t.shape for t in outputs):
        probed = _probe_onnx(model, inputs[0])
        if probed is not None:
            shape, shapes = probed
            outputs = [TensorFacts(t.name, shapes[t.name], t.dtype) for t in outputs]
            notes.append(f"output shapes are dynamic in the file: given as ONNX Runtime computes them for an input "
                         f"of {shape}")
    framework = "onnx"
    producer = model.producer_name.lower()
    if "pytorch" in producer:
        framework = "pytorch-onnx"
    return ModelFacts(path=path, framework=framework, sha256=sha256_file(path), inputs=inputs,
                      outputs=outputs, op_counts=dict(Counter(n.op_type for n in graph.node)),
                      graph_preprocess=_affine_chain(chain), notes=notes)


def _probe_onnx(model: Any, image: TensorFacts) -> tuple[list[int], dict[str, list[int | None]]] | None:
    """Output shapes from one ONNX Runtime pass on zeros: batch 1, a free side FREE_SIDE (a detector's
    size; a fixed side as the file says). None when the graph does not run so."""
    import onnxruntime as ort

    nhwc = len(image.shape) == 4 and image.shape[1] not in (1, 3) and image.shape[3] in (1, 3)
    side_dims = (1, 2) if nhwc else (2, 3)
    shape = [1 if i == 0 and d is None else FREE_SIDE if d is None and i in side_dims else (d or 3)
             for i, d in enumerate(image.shape)]
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        values = session.run(None, {image.name: np.zeros(shape, np.float32)})
    except Exception:  # onnxruntime's Fail / InvalidArgument: no probe, the file's shapes stand
        return None
    return shape, {meta.name: list(v.shape) for meta, v in zip(session.get_outputs(), values)}


# -- frozen TensorFlow GraphDef --

TF_KINDS = {"Sub": "sub", "AddV2": "add", "Add": "add", "Mul": "mul", "RealDiv": "div"}
TF_NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "Assert", "VarHandleOp", "Identity_not_used"}


def _read_graphdef(path: Path) -> ModelFacts:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf's DecodeError: not a GraphDef (a SavedModel, a truncated file)
        raise RkverifyError(path, "", f"not a frozen TensorFlow GraphDef ({type(exc).__name__})",
                            "freeze the model first (tf.function -> convert_variables_to_constants_v2), "
                            "or give its .onnx / .tflite") from None
    nodes = list(graph_def.node)
    consumed = {i.lstrip("^").split(":")[0] for n in nodes for i in n.input}
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")

    def facts(node_name: str) -> TensorFacts:
        tensor = graph.get_tensor_by_name(f"{node_name}:0")
        dims = tensor.shape.as_list() if tensor.shape.rank is not None else []
        return TensorFacts(f"{node_name}:0", dims, tensor.dtype.name)

    inputs = [facts(n.name) for n in nodes if n.op == "Placeholder"]
    outputs = [facts(n.name) for n in nodes if n.name not in consumed and n.op not in TF_NOT_OUTPUTS]
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in nodes if n.op == "Const"}
    chain: list[tuple[str, str, np.ndarray | None]] = []
    current = inputs[0].name.split(":")[0] if inputs else ""
    for _ in range(4):
        users = [n for n in nodes if current in {i.split(":")[0] for i in n.input}]
        if len(users) != 1 or users[0].op not in (*TF_KINDS, "Identity"):
            break
        node = users[0]
        if node.op != "Identity":
            other = [consts.get(i.split(":")[0]) for i in node.input if i.split(":")[0] != current]
            chain.append((TF_KINDS[node.op], f"{node.op} {node.name}", other[0] if other else None))
        current = node.name
    return ModelFacts(path=path, framework="keras-pb", sha256=sha256_file(path), inputs=inputs, outputs=outputs,
                      op_counts=dict(Counter(n.op for n in nodes)), graph_preprocess=_affine_chain(chain))


# -- TFLite --

def _read_tflite(path: Path) -> ModelFacts:
    import tensorflow as tf

    try:
        interpreter = tf.lite.Interpreter(model_path=str(path))
    except ValueError as exc:
        raise RkverifyError(path, "", f"not a TFLite model ({exc})", "give a .tflite file as the converter wrote it") \
            from None

    def facts(detail: dict[str, Any]) -> TensorFacts:
        signature = detail.get("shape_signature", detail["shape"])
        dims = [None if int(d) < 0 else int(d) for d in signature]
        scale, zero = detail.get("quantization", (0.0, 0))
        quant = (float(scale), int(zero)) if scale else None
        return TensorFacts(detail["name"], dims, np.dtype(detail["dtype"]).name, quant)

    inputs = [facts(d) for d in interpreter.get_input_details()]
    ops = Counter(op["op_name"] for op in interpreter._get_ops_details())  # no public op list in tf.lite
    graph_pre = None
    image_inputs = [t for t in inputs if len(t.shape) == 4]
    if image_inputs and image_inputs[0].quantization:
        scale, zero = image_inputs[0].quantization
        graph_pre = GraphPreprocess(mean=[float(zero)] * 3, std=[round(1 / scale, 6)] * 3,
                                    ops=[f"input quantization scale {scale:g}, zero point {zero}"])
    return ModelFacts(path=path, framework="tflite", sha256=sha256_file(path), inputs=inputs,
                      outputs=[facts(d) for d in interpreter.get_output_details()], op_counts=dict(ops),
                      graph_preprocess=graph_pre)


# -- MXNet symbol + params --

# both spellings: symbols saved before MXNet 1.x's rename, and after
MX_KINDS = {"_minusscalar": "sub", "_plusscalar": "add", "_mulscalar": "mul", "_divscalar": "div",
            "_minus_scalar": "sub", "_plus_scalar": "add", "_mul_scalar": "mul", "_div_scalar": "div"}
# input sides tried to find the one the params fit (a graph with a FullyConnected fits one size only)
MX_SIDES = (112, 96, 128, 160, 224, 48, 24, 12, 640)
FREE_SIDE = 640  # where a fully convolutional graph's output shapes are read


def params_beside(symbol: Path) -> Path | None:
    prefix = symbol.name.removesuffix(".json").removesuffix("-symbol")
    found = sorted(symbol.parent.glob(f"{prefix}-*.params"))
    return found[-1] if found else None


def _read_mxnet(path: Path) -> ModelFacts:
    try:
        symbol = json.loads(path.read_text())
        nodes = symbol["nodes"]
    except (ValueError, KeyError, TypeError):
        raise RkverifyError(path, "", "not an MXNet symbol JSON (no 'nodes')", "give the <prefix>-symbol.json "
                            "that mx.model.save_checkpoint / HybridBlock.export wrote") from None
    params_path = params_beside(path)
    if params_path is None:
        raise RkverifyError(path, "", "no <prefix>-NNNN.params beside the symbol",
                            "put the params file the model was saved with next to the symbol JSON")
    from convert.frameworks import import_mxnet

    mx = import_mxnet()

    stored = {k.split(":", 1)[-1]: v.shape for k, v in mx.nd.load(str(params_path)).items()}
    input_names = [n["name"] for n in nodes if n["op"] == "null" and n["name"] not in stored
                   and not n["name"].endswith(("_moving_mean", "_moving_var", "_label"))]
    sym = mx.sym.load(str(path))
    notes: list[str] = []
    first_conv = next((n for n in nodes if n["op"] == "Convolution"), None)
    weight = nodes[first_conv["inputs"][1][0]]["name"] if first_conv else ""
    channels = int(stored[weight][1]) if weight in stored else 3
    side, out_shapes = None, None
    for candidate in MX_SIDES:
        try:
            arg_shapes, outs, _ = _infer(sym, input_names[0], (1, channels, candidate, candidate))
        except Exception:  # MXNet raises MXNetError when a size cannot flow through the graph
            continue
        fits = all(stored.get(name, shape) == tuple(shape) for name, shape in zip(sym.list_arguments(), arg_shapes))
        if fits and side is None:
            side, out_shapes = candidate, outs
    fixed = [d for d in (side,) if d is not None]
    every_side = side is not None and _fits_all(sym, stored, input_names[0], channels)
    if every_side:
        _, out_shapes, _ = _infer(sym, input_names[0], (1, channels, FREE_SIDE, FREE_SIDE))
        notes.append(f"the input's height and width are free (fully convolutional): any size fits the params; "
                     f"output shapes are given for a {FREE_SIDE}x{FREE_SIDE} input")
    shape: list[int | None] = [1, channels, None, None] if every_side or not fixed else [1, channels, side, side]
    heads = [nodes[h[0]]["name"] for h in symbol["heads"]]
    outputs = [TensorFacts(name, list(s) if s else []) for name, s in zip(heads, out_shapes or [[]] * len(heads))]
    chain: list[tuple[str, str, np.ndarray | None]] = []
    current = next(i for i, n in enumerate(nodes) if n["name"] == input_names[0])
    for _ in range(4):
        users = [i for i, n in enumerate(nodes) if any(inp[0] == current for inp in n["inputs"])]
        if len(users) != 1 or nodes[users[0]]["op"] not in (*MX_KINDS, "_copy", "identity"):
            break
        node = nodes[users[0]]
        if node["op"] in MX_KINDS:
            attrs = node.get("attrs") or node.get("attr") or node.get("param") or {}
            scalar = float(attrs["scalar"])
            chain.append((MX_KINDS[node["op"]], f"{node['name']} ({scalar:g})", np.array(scalar)))
        current = users[0]
    return ModelFacts(path=path, framework="mxnet", sha256=sha256_file(path),
                      inputs=[TensorFacts(input_names[0], shape)], outputs=outputs,
                      op_counts=dict(Counter(n["op"] for n in nodes if n["op"] != "null")),
                      params=params_path, params_sha256=sha256_file(params_path),
                      graph_preprocess=_affine_chain(chain), notes=notes)


def _infer(sym: Any, name: str, shape: tuple[int, ...]) -> tuple[Any, Any, Any]:
    """MXNet's infer_shape, without the lines it prints for a size that does not fit."""
    with contextlib.redirect_stdout(io.StringIO()):
        return sym.infer_shape(**{name: shape})


def _fits_all(sym: Any, stored: dict[str, tuple[int, ...]], name: str, channels: int) -> bool:
    """Two more sizes fit too: the graph has no size-bound layer."""
    for side in (320, 480):
        try:
            arg_shapes, _, _ = _infer(sym, name, (1, channels, side, side))
        except Exception:  # MXNetError: this size does not flow through
            return False
        if not all(stored.get(n, s) == tuple(s) for n, s in zip(sym.list_arguments(), arg_shapes)):
            return False
    return True

"""MXNet symbol + params (InsightFace style) -> ONNX with MXNet's own exporter
(mxnet.onnx.export_model, MXNet 1.9), and MXNet's forward as the float reference."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from convert.frameworks import import_mxnet
from convert.graph_names import GraphNames, check_names
from convert.source import SourceFiles
from core.artifacts import atomic_path
from core.errors import RkverifyError
from core.pixels import normalize
from core.recipe import LoadedRecipe

# MXNet 1.9's exporter translates ops with its newest table (opset 13) but stamps the model with
# the newest opset the onnx package knows (23 with onnx 1.18), which ONNX Runtime 1.20 and
# rknn-toolkit2 refuse. The stamp is set back to what the ops were written for.
TRANSLATION_OPSET = 13
OUTPUT_SUFFIX = "_output"  # MXNet names a node's output tensor <node>_output


# BatchNorm statistics: the symbolic API names them <bn>_moving_mean/var, Gluon's export stores
# <bn>_running_mean/var. A symbol of one with params of the other (InsightFace's mnet.25 as
# released) must not run on MXNet's default statistics (mean 0, var 1): the stored ones are used.
STAT_SPELLINGS = (("_moving_mean", "_running_mean"), ("_moving_var", "_running_var"))


def load_symbol(files: SourceFiles, loaded: LoadedRecipe) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """The symbol cut at the recipe's outputs, its params ({name: NDArray}, arg:/aux: prefixes dropped)
    and the BatchNorm statistics found under the other spelling ({symbol name: params-file name})."""
    mx = import_mxnet()
    recipe = loaded.recipe
    try:
        symbol = mx.sym.load(str(files.model))
        saved = mx.nd.load(str(files.params))
    except Exception as exc:  # MXNetError on a malformed json / params file
        raise RkverifyError(files.model, "source", f"not an MXNet symbol + params pair ({exc})",
                            "give the <prefix>-symbol.json and <prefix>-<epoch>.params saved together") from None
    params = {key.split(":", 1)[-1]: value for key, value in saved.items()}
    data_names: dict[str, list[int] | None] = {a: None for a in symbol.list_arguments() if a not in params}
    internals = symbol.get_internals()
    nodes = [o.removesuffix(OUTPUT_SUFFIX) for o in internals.list_outputs() if o.endswith(OUTPUT_SUFFIX)]
    check_names(GraphNames(data_names, nodes, "the symbol", input_noun="data input"), loaded, recipe.input)
    renamed = _statistics_by_other_spelling(mx, symbol, params, files, loaded)
    params |= {wanted: params[stored] for wanted, stored in renamed.items()}
    cut = mx.sym.Group([internals[name + OUTPUT_SUFFIX] for name in recipe.outputs])
    return cut, params, renamed


def _statistics_by_other_spelling(mx, symbol, params: dict[str, Any], files: SourceFiles,
                                  loaded: LoadedRecipe) -> dict[str, str]:
    """{symbol's aux name: params-file name} for statistics stored under the other spelling, each of
    the shape the symbol infers; any other aux state the params file lacks is one clear error."""
    shapes = dict(zip(symbol.list_auxiliary_states(),
                      symbol.infer_shape(**{loaded.recipe.input.name: tuple(loaded.recipe.input.shape)})[2]))
    needed = set(symbol.list_arguments()) | set(shapes)
    renamed, missing = {}, []
    for name in sorted(set(shapes) - set(params)):
        stored = next((name.removesuffix(a) + b for a, b in STAT_SPELLINGS + tuple((b, a) for a, b in STAT_SPELLINGS)
                       if name.endswith(a)), None)
        if stored in params and stored not in needed and params[stored].shape == shapes[name]:
            renamed[name] = stored
        else:
            missing.append(name)
    if missing:
        raise RkverifyError(files.params or files.model, "source.params", f"{len(missing)} BatchNorm statistics the symbol needs are "
                            f"not in the params file, under either spelling (e.g. '{missing[0]}'; "
                            f"{'/'.join(s for pair in STAT_SPELLINGS for s in pair)})",
                            "give the params file saved with this symbol (MXNet would run them as mean 0, var 1)")
    return renamed


def _exportable(mx, symbol):
    """The same computation in ops MXNet 1.9's exporter translates correctly:
    - FullyConnected flattens its input unless told not to, but the exporter reads a missing
      `flatten` as False and emits a Gemm on an unflattened (N,C,1,1) tensor: spelled out;
    - SoftmaxActivation (mode=channel, RetinaFace's class heads) has no translation: it is
      softmax over axis 1, which has one.
    The framework check afterwards compares the ONNX with MXNet running the original symbol."""
    graph = json.loads(symbol.tojson())
    for node in graph["nodes"]:
        attrs = node.setdefault("attrs", {})
        if node["op"] == "FullyConnected":
            attrs.setdefault("flatten", "True")
        elif node["op"] == "SoftmaxActivation" and attrs.get("mode") == "channel":
            node["op"], node["attrs"] = "softmax", {"axis": "1"}
    return mx.sym.load_json(json.dumps(graph))


def to_onnx(files: SourceFiles, loaded: LoadedRecipe, out_path: Path) -> tuple[Path, dict[str, str]]:
    """The ONNX, and the statistics loaded under the params file's spelling (for the report)."""
    mx = import_mxnet()
    symbol, params, renamed = load_symbol(files, loaded)
    symbol = _exportable(mx, symbol)
    needed = set(symbol.list_arguments()) | set(symbol.list_auxiliary_states())
    with atomic_path(out_path) as tmp:
        try:
            mx.onnx.export_model(symbol, {k: v for k, v in params.items() if k in needed},
                                 in_shapes=[loaded.recipe.input.shape], in_types=[np.float32],
                                 onnx_file_path=str(tmp))
        except Exception as exc:  # the exporter raises AttributeError/NotImplementedError for ops it lacks
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise RkverifyError(loaded.path, "outputs", f"mxnet.onnx.export_model failed: {detail}",
                                "cut the symbol before that op (outputs: an earlier node)") from None
        model = onnx.load(str(tmp))
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = min(opset.version, TRANSLATION_OPSET)
        _fix_prelu_slopes(model)
        onnx.save(model, str(tmp))
    return out_path, renamed


def _fix_prelu_slopes(model: onnx.ModelProto) -> None:
    """MXNet's exporter writes a PReLU slope as (C,), which ONNX broadcasts over the LAST axis
    (width) of an NCHW tensor: ONNX Runtime fails ("broadcast 56 by 64") or, when W == C, computes
    silently wrong. Per-channel slopes must be (C, 1, 1)."""
    slopes = {node.input[1] for node in model.graph.node if node.op_type == "PRelu"}
    for tensor in model.graph.initializer:
        if tensor.name in slopes and len(tensor.dims) == 1:
            tensor.dims.extend([1, 1])
    for graph_input in model.graph.input:  # the exporter also lists initializers as inputs
        dims = graph_input.type.tensor_type.shape.dim
        if graph_input.name in slopes and len(dims) == 1:
            dims.add().dim_value = 1
            dims.add().dim_value = 1


class MxnetRunner:
    """The symbol on MXNet (CPU), bound for inference at the recipe's input shape."""

    name = "mxnet"

    def __init__(self, files: SourceFiles, loaded: LoadedRecipe) -> None:
        self.files, self.loaded, self.recipe = files, loaded, loaded.recipe
        self.module: Any = None
        self.inference_time = 0.0

    def activate(self) -> None:
        mx = import_mxnet()
        symbol, params, _ = load_symbol(self.files, self.loaded)
        module = mx.mod.Module(symbol, data_names=[self.recipe.input.name], label_names=None, context=mx.cpu())
        module.bind(data_shapes=[(self.recipe.input.name, tuple(self.recipe.input.shape))], for_training=False)
        args = set(symbol.list_arguments())
        module.set_params({k: v for k, v in params.items() if k in args},
                          {k: v for k, v in params.items() if k in set(symbol.list_auxiliary_states())})
        self.module = module

    def infer(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        mx = import_mxnet()
        batch = mx.io.DataBatch([mx.nd.array(normalize(pixels, self.recipe.preprocess, "NCHW"))])
        start = time.perf_counter()
        self.module.forward(batch, is_train=False)
        outputs = [o.asnumpy() for o in self.module.get_outputs()]
        self.inference_time = time.perf_counter() - start
        return dict(zip(self.recipe.outputs, outputs))

    def deactivate(self) -> None:
        self.module = None

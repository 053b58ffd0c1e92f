"""Small real models made with onnx.helper, and recipes for them: models the suite has never seen."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.artifacts import sha256_file

SIZE = 32


def _weights(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float = 0.2) -> onnx.TensorProto:
    return numpy_helper.from_array(rng.normal(scale=scale, size=shape).astype(np.float32), name)


def two_outputs(path: Path, layout: str = "NCHW", input_type: int = TensorProto.FLOAT, qdq: bool = False) -> Path:
    """x -> conv 3x3 s2 -> relu -> 'features' [1,8,16,16] and GAP -> 'pooled' [1,8]: two outputs, no task.

    layout NHWC: the input is [1,32,32,3] with a Transpose inside (as TensorFlow exports do);
    input_type: an integer input is Cast to float first; qdq: QuantizeLinear/DequantizeLinear in front."""
    rng = np.random.default_rng(7)
    nodes, inits = [], [_weights(rng, "w", (8, 3, 3, 3)), _weights(rng, "b", (8,), 0.05)]
    current = "x"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [current], ["x_float"], to=TensorProto.FLOAT))
        current = "x_float"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [current], ["x_nchw"], perm=[0, 3, 1, 2]))
        current = "x_nchw"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                  numpy_helper.from_array(np.array(128, np.uint8), "z")]
        nodes += [helper.make_node("QuantizeLinear", [current, "s", "z"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xdq"])]
        current = "xdq"
    nodes += [helper.make_node("Conv", [current, "w", "b"], ["conv"], kernel_shape=[3, 3], strides=[2, 2],
                               pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["conv"], ["features"]),
              helper.make_node("GlobalAveragePool", ["features"], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["pooled"], axis=1)]
    shape = [1, 3, SIZE, SIZE] if layout == "NCHW" else [1, SIZE, SIZE, 3]
    graph = helper.make_graph(nodes, "two_outputs", [helper.make_tensor_value_info("x", input_type, shape)],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 8, SIZE // 2, SIZE // 2]),
                               helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def recipe(folder: Path, model: Path, name: str = "tiny-drift", task_block: str = "", extra: str = "",
           shape: str = f"[1, 3, {SIZE}, {SIZE}]", layout: str = "NCHW", outputs: str = "[features, pooled]") -> Path:
    """A recipe for a model file: drift task on real photos (insightface's), a small calibration set."""
    images = '[{package: insightface, glob: "insightface/data/images/*.jpg"}]'
    task = task_block or f"""\
        evaluate:
          task: drift
          images: {images}
          count: 3
          layer_analysis_images: 1
        """
    text = textwrap.dedent(f"""\
        name: {name}
        source: {{framework: onnx, path: {model}, sha256: {sha256_file(model)}}}
        inputs: [{{name: x, shape: {shape}, layout: {layout}}}]
        outputs: {outputs}
        preprocess: {{channel_order: RGB, mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5], resize: stretch}}
        quantization:
          dtype: w8a8
          calibration: {{name: {name}-{SIZE}, size: 6, images: {images}}}
        """) + textwrap.dedent(task) + textwrap.dedent(extra)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path

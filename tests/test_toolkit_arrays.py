"""The toolkit's read-only arrays: rknn-toolkit2 2.5.0 writes into weights it reads with
onnx.numpy_helper.to_array, which (onnx 1.18.0) returns np.frombuffer views of the protobuf's raw_data
bytes: read-only. Its fuse_pad_into_conv rule (rules/conv.py) and its hybrid proposal
(IRGraph.expand_batch) then fail with "assignment destination is read-only". convert.toolkit_arrays
makes them writeable copies before the toolkit reads a graph."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.recipe import PROJECT_ROOT


def pad_then_depthwise(path: Path) -> Path:
    """Keras' ZeroPadding2D before a DepthwiseConv2D, as tf2onnx writes it: a Pad, then a grouped Conv."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
               numpy_helper.from_array(rng.normal(size=(3, 1, 3, 3)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "b")]
    nodes = [helper.make_node("Pad", ["x", "pads"], ["padded"], mode="constant"),
             helper.make_node("Conv", ["padded", "w", "b"], ["y"], group=3, kernel_shape=[3, 3])]
    graph = helper.make_graph(nodes, "pad_dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_hands_out_raw_data_weights_read_only_and_the_boundary_copies_them() -> None:
    from convert.toolkit_arrays import _ORIGINAL as onnx_to_array  # as onnx has it, before a toolkit run patched it
    from convert.toolkit_arrays import _writable_to_array

    raw = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")  # raw_data, as every exporter writes
    assert raw.HasField("raw_data") and not onnx_to_array(raw).flags.writeable
    typed = helper.make_tensor("t", TensorProto.FLOAT, [2], [1.0, 2.0])  # float_data: already writeable
    assert onnx_to_array(typed).flags.writeable
    copied = _writable_to_array(raw)
    assert copied.flags.writeable and np.array_equal(copied, numpy_helper.to_array(raw))


BUILD = """
import sys
sys.path.insert(0, {root!r})
if {fixed}:
    from convert.toolkit_arrays import writable_initializers
    writable_initializers()
from rknn.api import RKNN
rknn = RKNN(verbose=True)
rknn.config(mean_values=[[0, 0, 0]], std_values=[[1, 1, 1]], target_platform="rk3588")
assert rknn.load_onnx(model={model!r}) == 0
print("build returned", rknn.build(do_quantization=False))
"""


def test_the_toolkit_fuses_a_pad_into_a_depthwise_conv_once_its_weights_are_writeable(tmp_path: Path) -> None:
    """The real toolkit on the real pattern: as shipped it fails in _p_fuse_pad_into_conv; given
    writeable weights the same build succeeds with the rule on (no build.disable_rules)."""
    model = pad_then_depthwise(tmp_path / "pad_dw.onnx")
    results = {}
    for fixed in (False, True):
        script = textwrap.dedent(BUILD.format(root=str(PROJECT_ROOT), fixed=fixed, model=str(model)))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)
        results[fixed] = done.stdout + done.stderr
    assert "rules/conv.py" in results[False] and "_p_fuse_pad_into_conv" in results[False]
    assert "assignment destination is read-only" in results[False]
    assert "build returned 0" not in results[False]
    assert "build returned 0" in results[True] and "read-only" not in results[True]

"""The first run of a new recipe explains itself: a failure at the toolkit (or just before it) is one line
naming the recipe field to change and the value that would work. Real: small graphs made here with
onnx.helper, converted by the pipeline a run uses (rknn-toolkit2 builds where the toolkit is the one
that refuses)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convert.onnx_prep import prepare_onnx
from core.errors import RkverifyError
from core.recipe import load_recipe
from tests import tiny_models

FLOAT16 = {"quantization.dtype": "float16"}  # no calibration needed to reach the toolkit's refusal


def _save(path: Path, nodes: list, inits: list, shape: list, out_shape: list | None = None) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _conv(rng: np.random.Generator) -> tuple[list, list]:
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w")]
    return [helper.make_node("Conv", ["x", "w"], ["features"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], inits


def fc_model(path: Path) -> Path:
    """Free height/width in the file, but a Flatten into a 2048x16 MatMul: it runs at 32x32 only."""
    rng = np.random.default_rng(1)
    nodes, inits = _conv(rng)
    inits.append(numpy_helper.from_array(rng.normal(size=(8 * 16 * 16, 16)).astype(np.float32), "fc"))
    nodes += [helper.make_node("MaxPool", ["features"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
              helper.make_node("Flatten", ["pooled"], ["flat"]), helper.make_node("MatMul", ["flat", "fc"], ["y"])]
    return _save(path, nodes, inits, [1, 3, "h", "w"], [1, 16])


def test_a_size_the_graph_cannot_run_names_the_shape_that_works(tmp_path: Path) -> None:
    model = fc_model(tmp_path / "fc.onnx")
    recipe = tiny_models.recipe(tmp_path, model, outputs="[y]", shape="[1, 3, 48, 48]")
    with pytest.raises(RkverifyError) as caught:
        prepare_onnx(model, load_recipe(str(recipe)), tmp_path / "out.onnx")
    error = caught.value
    assert error.field == "inputs.0.shape"
    assert "does not run at shape [1, 3, 48, 48]" in error.problem
    assert "use shape: [1, 3, 32, 32]" in error.fix
    # the value it names works
    recipe.write_text(recipe.read_text().replace("[1, 3, 48, 48]", "[1, 3, 32, 32]"))
    prepare_onnx(model, load_recipe(str(recipe)), tmp_path / "out.onnx")


def test_an_nhwc_recipe_gets_the_shape_in_its_own_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    nodes, inits = _conv(rng)
    inits.append(numpy_helper.from_array(rng.normal(size=(8 * 16 * 16, 16)).astype(np.float32), "fc"))
    nodes = [helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["x_nchw", "w"], ["features"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["features"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["pooled"], ["flat"]), helper.make_node("MatMul", ["flat", "fc"], ["y"])]
    model = _save(tmp_path / "nhwc.onnx", nodes, inits, [1, "h", "w", 3], [1, 16])
    recipe = tiny_models.recipe(tmp_path, model, outputs="[y]", shape="[1, 64, 64, 3]", layout="NHWC")
    with pytest.raises(RkverifyError, match=r"use shape: \[1, 32, 32, 3\]"):
        prepare_onnx(model, load_recipe(str(recipe)), tmp_path / "out.onnx")


def test_a_word_for_a_figure_in_accuracy_analysis_is_nan() -> None:
    """rknn-toolkit2 2.5.0 writes 'q_zero' for an all-zero tensor (line 67 of a random-weight Keras
    MobileNet's error_analysis.txt); the run used to end there."""
    from verify.analyses.layers import parse_error_analysis

    row = ("[exDataConvert] mobilenet_0.25_224_1/conv_preds_1/convolution:0__float16      q_zero |  q_zero    "
           "q_zero |  q_zero       ")
    table = parse_error_analysis("[Conv] conv_1   0.99000 | 1.00000   0.99500 | 0.50000\n" + row)
    assert len(table) == 2 and np.isnan(table.loc[1, "single_cos"])
    assert table["single_cos"].min() == 0.995


def test_an_output_that_is_no_tensor_of_the_graph_names_the_closest(tmp_path: Path) -> None:
    """Checked before the toolkit is called (its own message names no recipe field)."""
    model = tiny_models.two_outputs(tmp_path / "two.onnx")
    recipe = tiny_models.recipe(tmp_path, model, outputs="[features, pooled_out]")
    with pytest.raises(RkverifyError) as caught:
        prepare_onnx(model, load_recipe(str(recipe)), tmp_path / "out.onnx")
    assert caught.value.field == "outputs.1"
    assert "pooled_out" in caught.value.problem and "pooled" in caught.value.fix


def nms_model(path: Path) -> Path:
    """Boxes and scores from convolutions, then NonMaxSuppression: the toolkit refuses the NMS."""
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w_box"),
             numpy_helper.from_array(rng.normal(size=(1, 3, 3, 3)).astype(np.float32), "w_score"),
             numpy_helper.from_array(np.array([1, 4, 1024], np.int64), "box_shape"),
             numpy_helper.from_array(np.array([1, 1, 1024], np.int64), "score_shape"),
             numpy_helper.from_array(np.array([10], np.int64), "max_out"),
             numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
             numpy_helper.from_array(np.array([0.0], np.float32), "min_score")]
    nodes = [helper.make_node("Conv", ["x", "w_box"], ["box_map"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["box_map", "box_shape"], ["box_rows"]),
             helper.make_node("Transpose", ["box_rows"], ["boxes"], perm=[0, 2, 1]),
             helper.make_node("Conv", ["x", "w_score"], ["score_map"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["score_map"], ["score_prob"]),
             helper.make_node("Reshape", ["score_prob", "score_shape"], ["scores"]),
             helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "min_score"], ["kept"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("kept", TensorProto.INT64, [None, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def test_an_op_the_npu_cannot_run_names_the_outputs_to_cut_at(tmp_path: Path) -> None:
    """Real rknn-toolkit2 build (float16, rk3588): it refuses NonMaxSuppression; the line gives the
    outputs that end the graph before it, and that recipe builds."""
    from convert.pipeline import convert_recipe

    model = nms_model(tmp_path / "nms.onnx")
    recipe = tiny_models.recipe(tmp_path, model, name="nms", outputs="[kept]")
    with pytest.raises(RkverifyError) as caught:
        convert_recipe(load_recipe(str(recipe), FLOAT16), tmp_path / "models", tmp_path / "calib")
    error = caught.value
    assert error.field == "outputs", str(error)
    assert "NonMaxSuppression" in error.problem + error.fix
    assert "outputs: [boxes, scores]" in error.fix
    recipe.write_text(recipe.read_text().replace("outputs: [kept]", "outputs: [boxes, scores]"))
    built = convert_recipe(load_recipe(str(recipe), FLOAT16), tmp_path / "models", tmp_path / "calib")
    assert built.built.path.is_file()


def inspect_toolkit(model: Path, *extra: str) -> list[str]:
    """`rkverify.py inspect --toolkit` as a user runs it (its own process: the toolkit's console goes to
    a log at the file-descriptor level, which pytest's capture does not see)."""
    import subprocess
    import sys

    from core.recipe import PROJECT_ROOT

    result = subprocess.run([sys.executable, "rkverify.py", "inspect", str(model), "--toolkit", *extra],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()


def test_inspect_toolkit_says_where_each_op_runs(tmp_path: Path) -> None:
    """Real float16 build (rk3566): the toolkit's own op table, NPU and CPU."""
    lines = inspect_toolkit(tiny_models.two_outputs(tmp_path / "two.onnx"), "--target", "rk3566")
    npu = next(line for line in lines if line.startswith("toolkit (rk3566, float16 build): NPU ops: "))
    assert "Conv" in npu  # the convs (one fused with its Relu) run on the NPU
    assert "toolkit (rk3566): CPU ops: none" in lines


def test_inspect_toolkit_names_a_refused_op_and_the_cut(tmp_path: Path) -> None:
    lines = inspect_toolkit(nms_model(tmp_path / "nms.onnx"))
    assert any(line.startswith("toolkit (rk3588, float16 build): refused: ") for line in lines)
    fix = next(line for line in lines if line.startswith("toolkit fix: "))
    assert "outputs: [boxes, scores]" in fix

"""keras-pb, tflite and mxnet sources: the same recipe flow, and one clear line for each way it can fail."""
from __future__ import annotations

import json
import sys

import pytest

from convert.rknn_build import known_failure
from core.recipe import PROJECT_ROOT
from core.workspace import models_dir
from tests.conftest import workspace_of
from tests.test_recipe_errors import run_cli

TF_RECIPE = "retinaface-tf"


def test_tensorflow_input_name_suggests_the_placeholder(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace('- name: "x:0"', '- name: "x"'), TF_RECIPE)
    line = run_cli(path, capsys)
    assert "[inputs.0.name]" in line and "no placeholder tensor 'x'" in line and "x:0" in line


def test_tensorflow_output_name_suggests_real_tensors(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("softmax/Softmax:0", "softmax/Sofmax:0"), TF_RECIPE)
    line = run_cli(path, capsys)
    assert "[outputs.1]" in line and "RetinaFaceModel/softmax/Softmax:0" in line


def test_nchw_shape_for_a_tensorflow_graph_is_refused(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("shape: [1, 640, 640, 3]\n    layout: NHWC",
                                           "shape: [1, 3, 640, 640]\n    layout: NCHW"), TF_RECIPE)
    line = run_cli(path, capsys)
    assert "[inputs.0.layout]" in line and "NHWC" in line


def test_shape_the_placeholder_cannot_take(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("shape: [1, 640, 640, 3]", "shape: [1, 640, 640, 4]"), TF_RECIPE)
    line = run_cli(path, capsys)
    assert "[inputs.0.shape]" in line and "placeholder 'x:0' is [-1, -1, -1, 3]" in line


@pytest.mark.parametrize(("recipe", "module"), [(TF_RECIPE, "tensorflow"), ("tflite-mobilefacenet", "tensorflow"),
                                                ("mxnet-mobilefacenet", "mxnet")])
def test_framework_missing_from_the_environment(recipe: str, module: str, recipe_copy, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now raises ImportError
    line = run_cli(recipe_copy(lambda t: t, recipe), capsys)
    assert "[source.framework]" in line and f"needs {module}" in line and "requirements/base.txt" in line


def test_op_the_npu_lacks_names_outputs(recipe_copy, capsys) -> None:
    """The whole graph ends in NonMaxSuppression: the toolkit refuses it, the error says to cut."""
    def whole_graph(text: str) -> str:
        start = text.index("outputs:\n")
        end = text.index("\npreprocess:")
        text = text[:start] + 'outputs: ["Identity:0"]\n' + text[end:]
        # one output is no RetinaFace head: verified as any model is (task: drift), drift gates only
        return text.replace("task: detection", "task: drift").split("\ngates:")[0] + "\ngates: {min_output_cosine: 0.85}\n"

    line = run_cli(recipe_copy(whole_graph, TF_RECIPE), capsys)
    # the fix names the cut that works: the tensors that feed the op (convert/graph_cut.py)
    assert "[outputs]" in line and "NonMaxSuppression" in line and "end the graph before it with outputs: [" in line


def test_pad_fusion_crash_names_the_rule_to_disable() -> None:
    """The toolkit's own words when it builds retinaface-tf from the .pb (load_tensorflow), where
    onnxsim has not folded the ZeroPadding2D Pads first (rknn-toolkit2 2.5.0)."""
    log = ('  File "rknn/api/rules/conv.py", line 433, in rknn.api.rules.conv._p_fuse_pad_into_conv\n'
           "ValueError: assignment destination is read-only\n")
    field, fix = known_failure(log, "ValueError: assignment destination is read-only")
    assert field == "build.disable_rules" and "add fuse_pad_into_conv" in fix


@pytest.mark.parametrize("name", [TF_RECIPE, "keras-facenet", "keras-mobilefacenet", "tflite-mobilefacenet",
                                  "mxnet-mobilefacenet", "retinaface-mxnet"])
def test_native_framework_heads_the_stage_chain(name: str, fresh_run) -> None:
    """native -> ONNX is a translation: it must agree to float rounding, so any drift is later."""
    metrics = json.loads((fresh_run(name) / "metrics.json").read_text())
    first = metrics["stages"]["stages"][0]
    assert first["from"].startswith(metrics["recipe_content"]["source"]["framework"])
    assert all(o["cosine"]["min"] > 0.9999 for o in first["outputs"].values()), first["outputs"]
    assert all(c > 0.9999 for c in metrics["frontend_check"]["worst_cosine_on_calibration_inputs"].values())
    assert len(metrics["stages"]["stages"]) == 3  # native -> ONNX -> RKNN fp16 -> RKNN quantized


def test_tensorflow_retinaface_finds_the_faces(fresh_run) -> None:
    """Trained TF RetinaFace, cut before its NMS, decoded on the host: it finds the scenes' faces."""
    detection = json.loads((fresh_run(TF_RECIPE) / "metrics.json").read_text())["detection"]
    assert detection["float_faces"] >= 20 and detection["match_rate"] >= 0.95 and detection["mean_iou"] > 0.9


def test_untrained_models_say_so_and_refuse_accuracy_gates(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("  framework: keras-pb\n", "  framework: keras-pb\n  trained: false\n")
                       .replace("gates:\n", "gates:\n  min_quantized_accuracy: 0.9\n", 1), "keras-facenet")
    line = run_cli(path, capsys)
    assert "[gates]" in line and "untrained" in line


def test_pad_before_depthwise_builds_from_the_raw_graph_and_the_canonical_one(tmp_path) -> None:
    """The Keras MobileFaceNet's trap, on the real files: tf2onnx's raw graph (what load_onnx or
    load_tensorflow would get) crashed rknn-toolkit2 2.5.0's fuse_pad_into_conv, which writes into
    weights onnx hands out read-only (tests/test_toolkit_arrays.py); given writeable ones it builds with
    the rule on. The canonical ONNX the suite builds has its Pads folded by onnxsim anyway."""
    import onnx

    from convert.build import build_rknn
    from convert.frontends import source_to_onnx
    from convert.onnx_prep import prepare_onnx
    from convert.source import obtain_source
    from core.recipe import load_recipe

    loaded = load_recipe("keras-mobilefacenet", {"build.disable_rules": []})
    files = obtain_source(loaded, tmp_path)
    raw, _ = source_to_onnx(loaded, files, tmp_path / "raw.onnx")
    # 17 Pads in the .pb; tf2onnx already merges one into its conv
    assert sum(node.op_type == "Pad" for node in onnx.load(str(raw)).graph.node) == 16
    canonical = prepare_onnx(raw, loaded, tmp_path / "canonical.onnx")
    assert not any(node.op_type == "Pad" for node in onnx.load(str(canonical)).graph.node)
    assert loaded.recipe.build.disable_rules == []
    build_rknn(loaded, raw, files.sha256, None, tmp_path / "raw.rknn").rknn.release()
    build_rknn(loaded, canonical, files.sha256, None, tmp_path / "canonical.rknn").rknn.release()


def _counter_graph(numbers: tuple[int, int, int, int]) -> bytes:
    """x -> Mul -> Add -> y as tf2onnx writes it: its constants and nodes numbered by its counter."""
    import onnx
    from onnx import TensorProto, helper

    one, mul, two, add = numbers
    constants = [helper.make_tensor(f"const_fold_opt__{n}", TensorProto.FLOAT, [1], [v]) for n, v in ((two, 2.0),
                                                                                                     (one, 1.0))]
    nodes = [helper.make_node("Mul", ["x", f"const_fold_opt__{one}"], [f"Mul__{mul}:0"], name=f"Mul__{mul}"),
             helper.make_node("Add", [f"Mul__{mul}:0", f"const_fold_opt__{two}"], ["y"], name=f"Add__{add}")]
    graph = helper.make_graph(nodes, "tf2onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], constants)
    return onnx.helper.make_model(graph).SerializeToString()


def test_generated_names_are_renumbered_in_graph_order() -> None:
    """Two tf2onnx runs of one graph differ only in the counter values of the names tf2onnx makes
    (measured on keras-facenet and keras-mobilefacenet): renumbered, they are the same bytes."""
    import onnx

    from convert.frontends.generated_names import renumber

    a, b = (renumber(onnx.load_from_string(_counter_graph(n))) for n in ((495, 497, 12, 3), (992, 7, 40, 500)))
    assert a.SerializeToString() == b.SerializeToString()
    assert [n.name for n in a.graph.node] == ["Mul__2", "Add__4"]
    assert [i.name for i in a.graph.initializer] == ["const_fold_opt__1", "const_fold_opt__3"]
    assert [v.name for v in [*a.graph.input, *a.graph.output]] == ["x", "y"]


def test_keras_pb_export_gives_one_cache_key(tmp_path) -> None:
    """The float caches are keyed by the canonical ONNX's sha256: two exports of one .pb give one key.
    tf2onnx alone gave different bytes each time (in one process its name counter runs on; across
    processes it numbers in another order). keras-mobilefacenet, not keras-facenet: the same
    nondeterminism, ~10 s an export instead of ~75 s at a 9 GB peak."""
    from convert.frontends import source_to_onnx
    from convert.onnx_prep import prepare_onnx
    from convert.source import obtain_source
    from core.artifacts import sha256_file
    from core.recipe import load_recipe

    loaded = load_recipe("keras-mobilefacenet")
    files = obtain_source(loaded, tmp_path)
    keys = []
    for run in ("a", "b"):
        raw, _ = source_to_onnx(loaded, files, tmp_path / f"{run}.keras-pb.onnx")
        keys.append(sha256_file(prepare_onnx(raw, loaded, tmp_path / f"{run}.onnx")))
    assert keys[0] == keys[1]


def test_tflite_input_name_suggests_the_real_one(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("- name: input_1 ", "- name: input_1:0 "), "tflite-mobilefacenet")
    line = run_cli(path, capsys)
    assert "[inputs.0.name]" in line and "input_1" in line and "target" in line


@pytest.mark.parametrize("io_type", ["float32", "uint8"])
def test_integer_quantized_tflite_is_refused(io_type: str, recipe_copy, capsys, tmp_path, monkeypatch) -> None:
    """A TFLite whose weights and activations are int8 (full-integer post-training quantization of a
    small real Keras model; with uint8 input and output too) has no float model left to compare
    against: one line, and the fix, told from the file's bytes before it is copied or converted."""
    import numpy as np

    from convert.frameworks import import_tensorflow
    from core.artifacts import sha256_file

    tf = import_tensorflow()
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((112, 96, 3), batch_size=1, name="input_1")
    x = tf.keras.layers.Conv2D(8, 3, strides=2)(inputs)
    x = tf.keras.layers.PReLU(shared_axes=[1, 2])(x)
    outputs = tf.keras.layers.Dense(128)(tf.keras.layers.GlobalAveragePooling2D()(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inputs, outputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, 112, 96, 3)).astype(np.float32)]
                                                for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_type == "uint8":
        converter.inference_input_type = converter.inference_output_type = tf.uint8
    model = tmp_path / "int8.tflite"
    model.write_bytes(converter.convert())

    def point_at_int8(text: str) -> str:
        text = text.replace("../shared/models/mobilefacenet-tf2/mobilefacenet_tf2.tflite", str(model))
        return text.replace("70ed61fcf34c6bff588b6827473d614f948c0a43580cff6c539c9152a5244e04", sha256_file(model))

    source = models_dir() / "tflite-mobilefacenet" / "source" / "tflite-mobilefacenet.tflite"
    before = source.read_bytes() if source.is_file() else None
    import convert.pipeline

    def converted(*args: object) -> None:
        raise AssertionError("the quantized TFLite reached the converter")

    monkeypatch.setattr(convert.pipeline, "source_to_onnx", converted)
    line = run_cli(recipe_copy(point_at_int8, "tflite-mobilefacenet"), capsys)
    assert str(model) in line and "[source.path]" in line and "integer-quantized" in line
    assert "no float reference" in line and "give the float .tflite" in line
    assert (io_type == "uint8") == ("is uint8" in line), line  # the first integer tensor: the uint8 input
    assert (source.read_bytes() if source.is_file() else None) == before, "nothing copied"


def test_tflite_leftover_input_is_not_in_the_onnx(fresh_run) -> None:
    """mobilefacenet_tf2.tflite has a second, unused input (`target`): the ONNX has one input."""
    import onnx

    run_dir = fresh_run("tflite-mobilefacenet")
    run = json.loads((run_dir / "metrics.json").read_text())
    model = onnx.load(workspace_of(run_dir) / "models" / "tflite-mobilefacenet" / "tflite-mobilefacenet.onnx")
    assert run["frontend_check"]["framework"] == "tflite"
    assert [i.name for i in model.graph.input] == ["input_1"]


def test_mxnet_retinaface_as_released_loads_its_own_statistics(fresh_run) -> None:
    """mnet.25's symbol says ..._moving_mean/var, its params ..._running_mean/var (27 BatchNorms):
    the run loads the stored statistics under the symbol's names and says which, and the detector
    then finds the scenes' faces (MXNet's default mean 0 / var 1 would not)."""
    metrics = json.loads((fresh_run("retinaface-mxnet") / "metrics.json").read_text())
    renamed = metrics["frontend_check"]["renamed_params"]
    assert len(renamed) == 54
    assert renamed["mobilenet0_batchnorm0_moving_mean"] == "mobilenet0_batchnorm0_running_mean"
    assert all(k.replace("_moving_", "_running_") == v for k, v in renamed.items())
    assert metrics["detection"]["float_faces"] >= 20


def test_mxnet_params_without_the_statistics_is_one_clear_error(recipe_copy, capsys, tmp_path) -> None:
    """The same symbol with a params file that holds its BatchNorm statistics under neither
    spelling: one line naming both spellings, nothing built."""
    from convert.frameworks import import_mxnet
    from core.artifacts import sha256_file

    mx = import_mxnet()
    released = "../shared/models/retinaface-mnet25-mxnet/mnet.25-0000.params"
    saved = mx.nd.load(str(PROJECT_ROOT / released))
    stripped = tmp_path / "mnet.25-0000.params"
    mx.nd.save(str(stripped), {k: v for k, v in saved.items() if "_running_" not in k})

    def point_at_stripped(text: str) -> str:
        text = text.replace(released, str(stripped))
        return text.replace("051313a2e7e62e981aafcf0dd5cb16505eca4295c4d2f6f36749a173eda8413c", sha256_file(stripped))

    line = run_cli(recipe_copy(point_at_stripped, "retinaface-mxnet"), capsys)
    assert "[source.params]" in line and "mobilenet0_batchnorm0_moving_mean" in line
    assert "_moving_mean" in line and "_running_mean" in line and "mean 0, var 1" in line


def test_w16a16i_of_a_prelu_model_is_refused_before_the_toolkit_crashes(recipe_copy, capsys) -> None:
    """rknn-toolkit2 2.5.0 segfaults building w16a16i_dfp for PRelu graphs (MobileFaceNet),
    which would end the whole run without a word: the recipe gets one line instead."""
    line = run_cli(recipe_copy(lambda t: t.replace("dtype: w8a8", "dtype: w16a16i_dfp"), "mxnet-mobilefacenet"), capsys)
    assert "[quantization.dtype]" in line and "PRelu" in line and "float16" in line

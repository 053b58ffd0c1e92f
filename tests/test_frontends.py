"""keras-pb and mxnet sources: the same recipe flow, and one clear line for each way it can fail."""
from __future__ import annotations

import json
import sys

import pytest

from convert.rknn_build import known_failure
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


@pytest.mark.parametrize(("recipe", "module"), [(TF_RECIPE, "tensorflow"), ("mxnet-mobilefacenet", "mxnet")])
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
    assert "[outputs]" in line and "NonMaxSuppression" in line and "cut the graph before it" in line


def test_pad_fusion_crash_names_the_rule_to_disable() -> None:
    """The toolkit's own words when it builds retinaface-tf from the .pb (load_tensorflow), where
    onnxsim has not folded the ZeroPadding2D Pads first (rknn-toolkit2 2.5.0)."""
    log = ('  File "rknn/api/rules/conv.py", line 433, in rknn.api.rules.conv._p_fuse_pad_into_conv\n'
           "ValueError: assignment destination is read-only\n")
    field, fix = known_failure(log, "ValueError: assignment destination is read-only")
    assert field == "build.disable_rules" and "add fuse_pad_into_conv" in fix


@pytest.mark.parametrize("name", [TF_RECIPE, "keras-facenet", "mxnet-mobilefacenet"])
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
    path = recipe_copy(lambda t: t.replace("min_embedding_cosine: 0.95", "min_quantized_accuracy: 0.9"),
                       "mxnet-mobilefacenet")
    line = run_cli(path, capsys)
    assert "[gates]" in line and "untrained" in line

"""Bad recipes: one clear line naming file, field and fix; exit code 2; nothing produced or lost."""
from __future__ import annotations

from pathlib import Path

import pytest

import rkverify
from core.errors import RkverifyError
from core.recipe import load_recipe


def run_cli(path: Path, capsys: pytest.CaptureFixture, *extra: str) -> str:
    code = rkverify.main(["run", str(path), "--reports", str(path.parent / "reports"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("rkverify: error:")]
    assert len(lines) == 1, err
    assert not (path.parent / "reports").exists(), "a failed run must not leave a report behind"
    return lines[0]


def test_shipped_recipe_is_valid() -> None:
    loaded = load_recipe("retinaface")
    assert loaded.recipe.target.platform == "rk3588"
    assert loaded.recipe.quantization.dtype == "w8a8"
    assert len(loaded.sha256) == 64


def test_malformed_yaml_names_the_line(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("outputs: [loc, conf, landmarks]", "outputs: [loc, conf"))
    line = run_cli(path, capsys)
    assert f"{path}:" in line and "not valid YAML" in line and "Fix:" in line


def test_missing_field_names_it(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("  channel_order: BGR\n", ""))
    line = run_cli(path, capsys)
    assert "[preprocess.channel_order]" in line and "missing" in line and "add 'channel_order:'" in line


def test_unknown_dtype_lists_the_allowed(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("dtype: w8a8", "dtype: int8"))
    line = run_cli(path, capsys)
    assert "[quantization.dtype]" in line and "'int8'" in line and "'w8a8'" in line


def test_unknown_platform_lists_the_allowed(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("platform: rk3588", "platform: rk3399"))
    line = run_cli(path, capsys)
    assert "[target.platform]" in line and "'rk3399'" in line and "'rk3588'" in line


def test_dtype_the_platform_lacks(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("dtype: w8a8", "dtype: w4a16"))
    line = run_cli(path, capsys)
    assert "'w4a16' is not supported on rk3588" in line and "w8a8, w16a16i_dfp" in line


def test_misspelt_field_suggests_the_real_one(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("  algorithm: normal", "  algoritm: normal"))
    line = run_cli(path, capsys)
    assert "[quantization.algoritm]" in line and "did you mean 'algorithm'" in line


def test_unknown_recipe_lists_known_ones() -> None:
    with pytest.raises(RkverifyError, match="retinaface"):
        load_recipe("no-such-recipe")


def test_framework_without_a_frontend_is_refused(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("framework: pytorch-onnx", "framework: caffe"))
    line = run_cli(path, capsys)
    assert "[source.framework]" in line and "'caffe'" in line and "'keras-pb'" in line and "'mxnet'" in line


def test_nhwc_recipe_for_an_nchw_model_gives_the_shape_that_works(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("shape: [1, 3, 640, 640]\n    layout: NCHW",
                                           "shape: [1, 640, 640, 3]\n    layout: NHWC"))
    line = run_cli(path, capsys)
    assert "[inputs.0.shape]" in line and "is [?, 3, ?, ?]" in line
    assert line.endswith("Fix: the model takes NCHW: give shape [1, 3, 640, 640] and layout: NCHW")


@pytest.mark.parametrize("edit, field, says", [
    # a recognizer with several outputs must name its embedding
    (lambda t: t.replace("outputs: [output0]", "outputs: [output0, output0]"), "[evaluate.verification.embedding]",
     "the model has 2 outputs (output0, output0): name the one that is the face embedding, or use evaluate.task: drift"),
    (lambda t: t.replace("  dataset:", "  embedding: fc7\n    dataset:", 1), "[evaluate.verification.embedding]",
     "'fc7' is not one of the outputs (output0)"),
    # task figures on a model that has none
    (lambda t: t.replace("task: recognition", "task: drift"), "[evaluate.images]", "a drift recipe needs 'images'"),
])
def test_recognition_outputs_and_tasks(edit, field: str, says: str, recipe_copy, capsys) -> None:
    line = run_cli(recipe_copy(edit, "arcface-mobilefacenet"), capsys)
    assert field in line and says in line, line


@pytest.mark.parametrize("override, where, field, says", [
    ("outputs=[loc, conf]", "--set outputs=", "[outputs]", "task: detection decodes RetinaFace's three outputs"),
    # the --set is fine on its own: the recipe's gate is what no longer fits
    ("evaluate.task=drift", "retinaface.yaml", "[gates.min_foreground_cosine]",
     "reads task: detection figures, this recipe's task is drift"),
])
def test_task_figures_only_where_they_fit(override: str, where: str, field: str, says: str, tmp_path: Path,
                                          capsys) -> None:
    code = rkverify.main(["run", "retinaface", "--set", override, "--reports", str(tmp_path / "reports")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and field in line and says in line, line
    assert line.split(" [")[0].endswith(where) or line.startswith(f"rkverify: error: {where}"), line


def test_bad_set_value_names_the_set_not_the_recipe(capsys) -> None:
    assert rkverify.main(["run", "retinaface", "--set", "quantization.calibration.size=0"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("rkverify: error: --set quantization.calibration.size=0 [quantization.calibration.size]:")
    assert "retinaface.yaml" not in line.split(" Fix: ")[0]


def test_set_without_equals_suggests_a_value_the_suite_accepts(capsys) -> None:
    assert rkverify.main(["run", "retinaface", "--set", "quantization.dtype"]) == 2
    line = capsys.readouterr().err.strip()
    suggested = line.split("--set ")[-1]
    key, value = suggested.split("=")
    assert load_recipe("retinaface", {key: value}).recipe.quantization.dtype == "w16a16i_dfp"


def test_run_on_a_directory_says_it_is_one(capsys) -> None:
    assert rkverify.main(["run", "convert/recipes"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("rkverify: error: convert/recipes: is a directory, not a recipe.") and ".yaml" in line


def test_an_earlier_gallery_without_search_is_refused(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("  task: recognition\n", "  task: recognition\n  identification:\n"
                                           "    enabled: false\n    enrolled_with: some-run\n"),
                       name="arcface-mobilefacenet")
    line = run_cli(path, capsys)
    assert "[evaluate.identification]" in line and "enabled: true" in line

"""Bad recipes: one clear line naming file, field and fix; exit code 2; nothing produced or lost."""
from __future__ import annotations

from pathlib import Path

import pytest

import rkverify
from convert.errors import RkverifyError
from convert.recipe import load_recipe


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


def test_bad_override_is_one_line(capsys) -> None:
    assert rkverify.main(["run", "retinaface", "--set", "quantization.dtype"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_unknown_recipe_lists_known_ones() -> None:
    with pytest.raises(RkverifyError, match="retinaface"):
        load_recipe("no-such-recipe")


def test_framework_without_a_frontend_is_refused(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("framework: pytorch-onnx", "framework: caffe"))
    line = run_cli(path, capsys)
    assert "[source.framework]" in line and "'caffe'" in line and "'keras-pb'" in line and "'mxnet'" in line


def test_nhwc_onnx_input_is_refused_before_the_toolkit_misreads_it(recipe_copy, capsys) -> None:
    path = recipe_copy(lambda t: t.replace("shape: [1, 3, 640, 640]\n    layout: NCHW",
                                           "shape: [1, 640, 640, 3]\n    layout: NHWC"))
    line = run_cli(path, capsys)
    assert "[inputs.0.layout]" in line and "reads pytorch-onnx inputs as NCHW" in line and "Fix:" in line

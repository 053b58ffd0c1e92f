"""Trained models from every source framework, measured on LFW's first View 2 fold (CI): figures
that fail when a frontend, the alignment or the build goes wrong, not only the recipes' gates."""
from __future__ import annotations

import json
import os
from pathlib import Path

from core.artifacts import sha256_file
from core.compare import cosine
from core.recipe import load_recipe
from tests.conftest import workspace_of
from verify.engines.cache import VectorCache


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def lfw_fold_1(metrics: dict) -> dict:
    verification = metrics["verification"]
    assert verification["is_lfw"] and verification["folds_used"] == [0], "CI measures LFW View 2 fold 1"
    assert verification["no_face_found"]["float"] == 0
    return verification


def test_insightface_mobilefacenet_float_on_lfw(fresh_run) -> None:
    """InsightFace's MobileFaceNet (published 99.47% on 10 folds of its own aligned LFW): 98.50% on
    fold 1 here; the float16 build keeps every embedding, w8a8 visibly does not."""
    metrics = metrics_of(fresh_run("mxnet-mobilefacenet"))
    verification = lfw_fold_1(metrics)
    assert verification["float"]["accuracy"]["mean"] >= 0.98
    native, to_fp16, to_w8a8 = (stage["outputs"]["fc1"]["cosine"]["mean"] for stage in metrics["stages"]["stages"])
    assert native > 0.99999 and to_fp16 > 0.9999 and to_w8a8 < 0.98


def test_float16_head_recovers_what_w8a8_loses(fresh_run) -> None:
    """The sensitivity fix (3 layers of the GDC head in float16) against plain w8a8, same calibration."""
    plain = lfw_fold_1(metrics_of(fresh_run("mxnet-mobilefacenet")))
    hybrid_metrics = metrics_of(fresh_run("mxnet-mobilefacenet-hybrid"))
    hybrid = lfw_fold_1(hybrid_metrics)
    assert hybrid["embedding_drift"]["cosine_mean"] > plain["embedding_drift"]["cosine_mean"] + 0.04
    assert len(hybrid["flipped_pairs"]) < len(plain["flipped_pairs"])
    assert hybrid_metrics["provenance"]["float_layers"] == ["conv_6sep_conv2d", "conv_6sep_relu", "conv_6dw7_7_conv2d"]


def float_embeddings(name: str, models: Path) -> VectorCache:
    """The run's float embeddings (the shared cache), keyed by photo content: the same keys for two
    models fed the same photos; `models` is the run's models/ folder."""
    from core.workspace import cache_dir
    from verify.face.recognition import Detector, FacePass, Model

    loaded = load_recipe(name)
    detector = load_recipe(loaded.recipe.evaluate.verification.detector).recipe
    aligner = Detector(detector, Model(sha256_file(models / detector.name / f"{detector.name}.onnx"),
                                       None), None)
    recognizer = Model(sha256_file(models / name / f"{name}.onnx"), None)
    return FacePass(loaded, {"float": recognizer}, aligner, cache_dir(), Path(os.devnull), 1).embeddings["float"]


def test_tflite_and_keras_pb_of_one_network_agree(fresh_run) -> None:
    """One trained MobileFaceNet as a float TFLite and as a Keras frozen .pb: each checked against its
    own framework, then against each other on every LFW face (112x96 alignment, same pixels)."""
    keras_run, tflite_run = fresh_run("keras-mobilefacenet"), fresh_run("tflite-mobilefacenet")
    keras, tflite = lfw_fold_1(metrics_of(keras_run)), lfw_fold_1(metrics_of(tflite_run))
    assert keras["float"]["accuracy"]["mean"] >= 0.97
    assert keras["float"]["accuracy"]["mean"] == tflite["float"]["accuracy"]["mean"]
    a = float_embeddings("keras-mobilefacenet", workspace_of(keras_run) / "models").entries
    b = float_embeddings("tflite-mobilefacenet", workspace_of(tflite_run) / "models").entries
    shared = set(a) & set(b)  # the caches may hold more faces than this run's (e.g. a full LFW run)
    assert len(shared) >= keras["images"]
    assert min(cosine(a[key][1], b[key][1]) for key in shared) > 0.9999


def test_mxnet_retinaface_float_vs_quantized_faces(fresh_run) -> None:
    """InsightFace's anchors decoded: float and w8a8 find the same faces at nearly the same places."""
    detection = metrics_of(fresh_run("retinaface-mxnet"))["detection"]
    assert detection["float_faces"] >= 25 and detection["match_rate"] == 1.0
    assert detection["mean_iou"] > 0.95 and detection["mean_landmark_error"] < 0.02


def test_pipeline_detector_is_built_as_the_device_runs_it() -> None:
    """A recognizer's detector is rebuilt for the recognizer's platform and detector_input size,
    into its own models/ folder; a detector that already fits is used as its recipe says."""
    from verify.finders import detector_overrides

    pipeline, detector = load_recipe("rv1126b-mxnet-pipeline"), load_recipe("retinaface-mxnet")
    overrides = detector_overrides(pipeline, detector)
    assert overrides["target.platform"] == "rv1126b" and overrides["name"] == "retinaface-mxnet-320x320"
    assert overrides["inputs"][0]["shape"] == [1, 3, 320, 320]
    assert detector_overrides(load_recipe("arcface-mobilefacenet"), load_recipe("retinaface")) == {}


def test_rv1126b_pipeline_end_to_end(fresh_run) -> None:
    """MXNet RetinaFace aligns, MXNet MobileFaceNet embeds, both built for rv1126b; quantized
    detector feeds the quantized recognizer."""
    run_dir = fresh_run("rv1126b-mxnet-pipeline")
    metrics = metrics_of(run_dir)
    verification = lfw_fold_1(metrics)
    assert verification["full_pipeline"] and metrics["provenance"]["platform"] == "rv1126b"
    detector = workspace_of(run_dir) / "models" / "retinaface-mxnet-320x320" / "retinaface-mxnet-320x320-w8a8-rv1126b.json"
    assert json.loads(detector.read_text())["platform"] == "rv1126b"
    assert verification["float"]["accuracy"]["mean"] >= 0.96
    assert verification["no_face_found"]["quantized"] == 0

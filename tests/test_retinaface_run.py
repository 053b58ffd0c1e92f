"""A real run of the default recipe: rknn-toolkit2 build, simulator vs ONNX Runtime, report, gates."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from core.artifacts import sha256_file
from core.recipe import load_recipe
from tests.conftest import workspace_of
from verify.report.run_report import render_report

RECIPE = load_recipe("retinaface")


def test_rknn_artifact_has_provenance(retinaface_run: Path, retinaface_metrics: dict) -> None:
    rknn = workspace_of(retinaface_run) / "models" / "retinaface" / "retinaface-w8a8-rk3588.rknn"
    sidecar = json.loads(rknn.with_suffix(".json").read_text())
    assert sidecar["artifact_sha256"] == sha256_file(rknn)
    assert sidecar["source_sha256"] == RECIPE.recipe.source.sha256
    assert sidecar["recipe_sha256"] == RECIPE.sha256
    assert sidecar["tools"]["rknn-toolkit2"] == "2.5.0"
    assert sidecar["quantized"] and sidecar["dtype"] == "w8a8" and sidecar["platform"] == "rk3588"
    # the file may have been rebuilt since (recognizer recipes build their detector in-process,
    # and the toolkit's export is not byte-reproducible); what it was built from is the same
    for key in ("recipe_sha256", "source_sha256", "onnx_sha256", "dtype", "platform"):
        assert retinaface_metrics["provenance"][key] == sidecar[key], key


def test_every_output_is_compared_on_real_images(retinaface_metrics: dict) -> None:
    m = retinaface_metrics
    assert set(m["outputs"]) == {"loc", "conf", "landmarks"}
    assert len(m["eval_images"]) >= 1 and all(Path(p).is_file() for p in m["eval_images"])
    for name, out in m["outputs"].items():
        assert out["nonfinite"] == 0, name
        assert -1.0 <= out["cosine"]["min"] <= out["cosine"]["max"] <= 1.0
    # drift figures only mean something if different inputs give different outputs
    if len(m["eval_images"]) > 1:
        assert m["input_sensitivity_cosine"]["loc"] < m["outputs"]["loc"]["cosine"]["mean"]
    assert m["calibration"]["used"] >= 1


def test_detection_agreement_on_real_faces(retinaface_metrics: dict) -> None:
    d = retinaface_metrics["detection"]
    assert d["float_faces"] >= 1, "the float model must find faces in the eval images"
    assert 0.0 <= d["match_rate"] <= 1.0 and d["matched"] <= d["float_faces"]
    assert d["mean_iou"] >= RECIPE.recipe.evaluate.detection.match_iou


def test_layer_table_covers_the_graph(retinaface_run: Path, retinaface_metrics: dict) -> None:
    layers = pd.read_csv(retinaface_run / "layers.csv")
    assert len(layers) > 50 and layers["order"].is_monotonic_increasing
    assert (layers["images"] == RECIPE.recipe.evaluate.layer_analysis_images).all()
    assert retinaface_metrics["layers"]["worst_single_cos"] == pytest.approx(layers["single_cos_worst"].min())
    assert len(retinaface_metrics["layers"]["worst10"]) == 10
    assert len(list((retinaface_run / "accuracy_analysis").glob("error_analysis_*.txt"))) == layers["images"][0]


def test_report_is_self_contained_and_re_renderable(retinaface_run: Path) -> None:
    html = (retinaface_run / "report.html").read_text()
    for section in ("Gates", "Per-output agreement", "Detection agreement", "Per-layer drift",
                    "Worst 10 layers", "Provenance", "calibration images"):
        assert section in html, section
    assert len(re.findall(r'src="data:image/(png|jpeg);base64,', html)) == 2  # layer plot + boxes
    assert "<code>python rkverify.py view retinaface --rknn</code>" in html  # opens the worst layers' graph
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must not need the network"
    assert render_report(retinaface_run).read_text() == html


def test_stage_attribution_names_quantization(retinaface_metrics: dict) -> None:
    stages = retinaface_metrics["stages"]
    compiler, quantization = stages["stages"]
    assert compiler["to"].startswith("RKNN float16") and quantization["to"].startswith("RKNN w8a8")
    # the fp16 compile keeps the float graph; the int8 step is where RetinaFace's loc drifts
    assert compiler["outputs"]["loc"]["cosine"]["mean"] > 0.999
    assert quantization["cosine_loss"] > compiler["cosine_loss"]
    assert stages["drift_starts_at"] == quantization["to"]

"""task: drift on a model that is neither detector nor recognizer (two outputs, made here): a real
rknn-toolkit2 build and simulator run, per-output and per-layer drift, no task figures. Exit 0 when
its gates pass, 1 when one fails."""
from __future__ import annotations

import json
from pathlib import Path

from tests import tiny_models
from tests.cli import rkverify


def test_any_model_gets_drift_figures_and_no_task_figures(tmp_path: Path) -> None:
    model = tiny_models.two_outputs(tmp_path / "two.onnx")
    recipe = tiny_models.recipe(tmp_path, model, extra="gates: {min_output_cosine: 0.99, min_worst_layer_cosine: 0.99}\n")
    passed = rkverify("run", str(recipe), "--reports", str(tmp_path / "reports"))
    assert passed.code == 0, passed.stderr[-2000:]
    run_dir = Path(passed.stdout.strip().splitlines()[-1].removeprefix("report: ")).parent
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["outputs"]) == {"features", "pooled"}
    assert all(o["cosine"]["mean"] > 0.99 and not o["too_small"] for o in metrics["outputs"].values())
    assert metrics["layers"]["count"] > 0 and metrics["stages"]["drift_starts_at"]
    for task_figures in ("detection", "verification", "preprocess_check"):
        assert task_figures not in metrics
    assert "task: drift" in (run_dir / "report.html").read_text()

    failed = rkverify("run", str(recipe), "--set", "gates.min_output_cosine=1.01", "--reports", str(tmp_path / "reports"))
    assert failed.code == 1
    assert "gate min_output_cosine:" in failed.stdout and "FAIL" in failed.stdout

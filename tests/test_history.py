"""Run history: comparison with the previous run flags regressions; the index links every run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from verify.history import compare_runs, index_rows
from verify.report.run_report import render_index


def copy_run(run: Path, reports: Path, run_id: str) -> Path:
    target = reports / "retinaface" / run_id
    shutil.copytree(run, target)
    return target


def test_a_degraded_run_is_flagged_against_its_baseline(retinaface_run: Path, tmp_path: Path) -> None:
    baseline = copy_run(retinaface_run, tmp_path, "20260101T000000Z-base")
    current = copy_run(retinaface_run, tmp_path, "20260102T000000Z-new")
    metrics = json.loads((current / "metrics.json").read_text())
    assert not compare_runs(metrics, current, baseline, 0.005)["regressed"]
    metrics["outputs"]["conf"]["cosine"]["mean"] -= 0.02
    metrics["passed"] = False
    metrics["gates"][0]["passed"] = False
    (current / "metrics.json").write_text(json.dumps(metrics))
    layers = pd.read_csv(current / "layers.csv")
    layers.loc[5, "single_cos_worst"] -= 0.1
    layers.to_csv(current / "layers.csv", index=False)
    result = compare_runs(metrics, current, baseline, 0.005)
    assert result["regressed"] and result["outputs"]["conf"]["regressed"] and not result["outputs"]["loc"]["regressed"]
    assert [row["layer"] for row in result["regressed_layers"]] == [layers.loc[5, "layer"]]

    index = render_index(tmp_path).read_text()
    rows = index_rows(tmp_path)
    assert rows[0]["latest"]["run_id"] == current.name and not rows[0]["latest"]["passed"]
    assert f'href="retinaface/{current.name}/report.html"' in index
    assert f'href="retinaface/{baseline.name}/report.html"' in index
    assert "FAIL: " + metrics["gates"][0]["gate"] in index

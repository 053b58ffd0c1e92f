"""Sweeps: a real 2 x 2 sweep of the fastest recipe through the local pool, Ray and serially."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.recipe import load_recipe
from verify.sweep import best_variant, cost, grid_variants

# mmse would take minutes per 640x640 build: the test sweeps what is quick to build
GRID = {"quantization.method": ["channel", "layer"], "quantization.calibration.size": [8, 16]}
# the variants measured lean: no analyses, 3 eval images, one accuracy_analysis image
LEAN = {"analysis.sensitivity_layers": 0, "analysis.preprocess_check": False, "evaluate.count": 3,
        "evaluate.layer_analysis_images": 1}


def test_grid_and_cost_order() -> None:
    assert grid_variants(GRID)[1] == {"quantization.method": "channel", "quantization.calibration.size": 16}
    order = sorted(["float16", "w16a16i_dfp", "w8a8"], key=lambda d: cost(load_recipe(
        "retinaface", {"quantization.dtype": d}).recipe))
    assert order == ["w8a8", "w16a16i_dfp", "float16"]
    hybrid = load_recipe("retinaface", {"quantization.hybrid.float_layers": ["a"]}).recipe
    assert cost(load_recipe("retinaface").recipe) < cost(hybrid) < cost(load_recipe(
        "retinaface", {"quantization.dtype": "float16"}).recipe)


def test_best_variant_prefers_the_task_figure_then_closeness_then_the_smaller_model() -> None:
    def row(name: str, value: int, passed: bool, accuracy: float, cosine: float, size: int) -> dict:
        return {"variant": name, "fields": {"a.b": value}, "passed": passed, "headline": accuracy, "rknn_bytes": size,
                "figures": {"accuracy": accuracy, "embedding cosine": cosine, "cosine out": cosine}}

    rows = [row("v01", 1, True, 0.9, 0.99, 10), row("v02", 2, True, 0.9, 0.99, 5), row("v03", 3, False, 0.99, 1.0, 1)]
    best = best_variant(rows)
    assert best["variant"] == "v02" and best["set_lines"] == ["--set a.b=2"] and "a:\n  b: 2" in best["recipe_block"]
    rows.append(row("v04", 4, True, 0.9, 0.995, 50))  # same accuracy, closer to float: worth the size
    assert best_variant(rows)["variant"] == "v04"
    rows.append(row("v05", 5, True, 0.91, 0.95, 50))  # the task figure comes first
    assert best_variant(rows)["variant"] == "v05"


def test_a_board_adds_the_npu_time_plot_and_its_own_pareto_front(tmp_path: Path) -> None:
    from verify.analyses.board_run import npu_time_ms
    from verify.report.sweep_report import pareto, render_sweep

    # eval_perf's total, wherever it sits in the dict; microseconds when the key says so
    assert npu_time_ms({"layers": [], "summary": {"Total Operator Elapsed Time(us)": 4200}}) == 4.2
    assert npu_time_ms({"total_time": 3.5}) == 3.5 and npu_time_ms(None) is None
    # the string form (rknn-toolkit2's user guide; its rknn_base formats "Total Time(us): {}")
    assert npu_time_ms("Total Time(us): 17219\nFPS: 58.07\n") == pytest.approx(17.219)
    table = ("ID   OpType   DataType ...\n1    InputOperator INT8 ...\n" + "-" * 40 +
             "\nTotal Operator Elapsed Per Frame Time(us): 4432\nTotal Memory Read/Write Per Frame Size(KB): 23948.31\n")
    assert npu_time_ms(table) == pytest.approx(4.432)
    assert npu_time_ms("no figure here") is None
    rows = [{"variant": f"v0{i}", "fields": {"x": i}, "passed": True, "headline": h, "rknn_bytes": b, "npu_ms": t,
             "gates": [], "figures": {"match rate": h}, "build_seconds": 1.0, "wall_seconds": 2.0, "peak_memory_mb": 9,
             "run_dir": "v"} for i, (h, b, t) in enumerate([(0.99, 9, 5.0), (0.98, 4, 6.0), (0.97, 5, 2.0)], 1)]
    assert pareto(rows) == {"v01", "v02"} and pareto(rows, "npu_ms") == {"v01", "v03"}
    summary = {"recipe": "r", "sweep_id": "s", "created_at": "now", "workers": 1, "engine": "local processes",
               "until_gates": False, "stopped_at": None, "rows": rows, "best": best_variant(rows)}
    (tmp_path / "sweep.json").write_text(json.dumps(summary))
    html = render_sweep(tmp_path).read_text()
    assert "NPU ms" in html and html.count("data:image/png") == 2
    for row in rows:
        row["npu_ms"] = None  # the simulator: no NPU time, one plot, and the page says why
    (tmp_path / "sweep.json").write_text(json.dumps(summary))
    html = render_sweep(tmp_path).read_text()
    assert "NPU ms" not in html and html.count("data:image/png") == 1 and "No board configured" in html


def figures(folder: Path) -> dict[str, dict]:
    rows = json.loads((folder / "sweep.json").read_text())["rows"]
    return {r["variant"]: r.get("figures") or r.get("error") for r in rows}


@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from verify.sweep import sweep

    return sweep("retinaface", GRID, tmp_path_factory.mktemp("pool"), workers=2, base=LEAN)


def test_sweep_through_the_pool_names_a_best_variant(pool_sweep: Path) -> None:
    summary = json.loads((pool_sweep / "sweep.json").read_text())
    assert len(summary["rows"]) == 4 and all("figures" in r for r in summary["rows"])
    assert summary["best"] and summary["best"]["variant"] in {r["variant"] for r in summary["rows"] if r["passed"]}
    channel = [r for r in summary["rows"] if r["fields"]["quantization.method"] == "channel"]
    layer = [r for r in summary["rows"] if r["fields"]["quantization.method"] == "layer"]
    # per-channel weights keep the RetinaFace box output closer to float than per-layer
    assert min(r["figures"]["cosine loc"] for r in channel) > max(r["figures"]["cosine loc"] for r in layer)
    html = (pool_sweep / "sweep.html").read_text()
    assert "Pareto" in html and summary["best"]["set_lines"][0] in html


def test_serial_and_ray_give_the_pool_figures(pool_sweep: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import ray

    from verify.sweep import sweep

    serial = sweep("retinaface", GRID, tmp_path / "serial", workers=1, base=LEAN)
    try:
        on_ray = sweep("retinaface", GRID, tmp_path / "ray", workers=2, ray_address="local", base=LEAN)
    finally:
        ray.shutdown()
    reference = figures(pool_sweep)
    for other in (figures(serial), figures(on_ray)):  # ONNX Runtime's threading moves the last digits only
        assert other.keys() == reference.keys()
        for variant, values in reference.items():
            assert other[variant] == pytest.approx(values, abs=1e-6)
    assert "ray" in json.loads((on_ray / "sweep.json").read_text())["engine"]


def test_a_killed_variant_is_a_failed_row_and_the_others_complete(tmp_path: Path) -> None:
    """A real sweep of two variants; one variant's worker process is SIGKILLed from outside while it
    builds (as the OOM killer would): its row says so, the other variant's figures are there."""
    import multiprocessing
    import os
    import signal
    import threading
    import time

    from verify.sweep import sweep

    done: dict[str, Path] = {}
    thread = threading.Thread(target=lambda: done.update(folder=sweep(
        "retinaface", {"quantization.calibration.size": [8, 16]}, tmp_path, workers=2, base=LEAN)))
    thread.start()
    deadline = time.monotonic() + 120
    while len(multiprocessing.active_children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # well inside its imports and build
    victim = multiprocessing.active_children()[0]
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(timeout=600)
    rows = json.loads((done["folder"] / "sweep.json").read_text())["rows"]
    died = [r for r in rows if r.get("error") == "worker process died (exit code -9)"]
    finished = [r for r in rows if "figures" in r]
    assert len(died) == 1 and len(finished) == 1 and finished[0]["figures"]["match rate"] > 0.9
    assert "worker process died" in (done["folder"] / "sweep.html").read_text()


def test_until_gates_stops_at_the_first_batch_that_passes(tmp_path: Path) -> None:
    """Cheapest first (8 calibration images before 16), one variant per batch: the first passes the
    recipe's gates, so the second is not built and its row says why."""
    from verify.sweep import sweep

    folder = sweep("retinaface", {"quantization.calibration.size": [16, 8]}, tmp_path, workers=1, until_gates=True,
                   base=LEAN)
    summary = json.loads((folder / "sweep.json").read_text())
    rows = {r["variant"]: r for r in summary["rows"]}
    assert rows["v02"]["passed"] and rows["v02"]["cost_order"] == 1
    assert rows["v01"]["skipped"] == "not run: a cheaper variant already passes the gates" and "figures" not in rows["v01"]
    assert summary["stopped_at"] == "v02" and summary["best"]["variant"] == "v02"
    assert sorted(p.name for p in (folder / "variants").iterdir()) == ["v02"], "the skipped variant built nothing"

"""Benchmark: a full LFW run of a recognizer recipe, cold and warm, with and without analyses.

Writes reports/benchmarks/lfw_scale.json. "Cold" empties models/cache/ first (detections and
embeddings of every recipe), so the face pass detects, aligns and embeds every image of every
evaluated pair, float and quantized, with flip. Figures:
- per run: wall time, the verification step's time, the face pass's wall and engine-only time
  (summed over workers), and the ratio wall / (engine / workers) the target reads (<= 1.25); each
  worker's peak resident memory and the peak the pool sized its workers by (verify.engines.memory);
- warm: an unchanged re-run recomputes nothing; its verification step time (target < 2 s);
- analyses: the whole run with the recipe's analysis block on vs off (target <= 2x);
- scaling (with --workers 1 N): the cold runs' speed-up over one worker, whole run and face pass,
  and the ratio wall(N) / (wall(1) / N) the goal reads (<= 1.15). With --pin-cores a run of N
  workers may use N cores only (CPU affinity, inherited by its workers): one worker alone would
  otherwise spread ONNX Runtime over every core and the ratio would measure that, not the workers.

    python benchmarks/lfw_scale.py [recipe] [--workers 1 2] [--skip-analyses] [--pin-cores] [--max-folds N]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rkverify  # noqa: E402
from convert.signals import terminate_as_interrupt  # noqa: E402
from core.artifacts import tool_versions, utc_now, write_json_atomic  # noqa: E402
from core.workspace import cache_dir, reports_dir  # noqa: E402
from verify.engines import memory  # noqa: E402

VERIFY_STEP = "face verification, float vs quantized"
NO_ANALYSES: dict[str, object] = {"analysis.sensitivity_layers": 0, "analysis.calibration_resamples": 0, "analysis.toolkit_proposal": False}


def one_run(recipe: str, workers: int, overrides: dict[str, object], cold: bool, reports: Path,
            pin_cores: bool) -> dict[str, Any]:
    if cold:
        shutil.rmtree(cache_dir(), ignore_errors=True)
    allowed = os.sched_getaffinity(0)
    if pin_cores:
        os.sched_setaffinity(0, sorted(allowed)[:workers])
    try:
        started = time.perf_counter()
        run_dir = rkverify.run(recipe, overrides, reports_dir=reports, workers=workers)
        wall = time.perf_counter() - started
    finally:
        os.sched_setaffinity(0, allowed)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    v = metrics["verification"]
    face_pass = v["pass"]
    engine = sum(face_pass["engine_seconds"].values())
    figures = {
        "workers": workers, "cores": min(workers, len(allowed)) if pin_cores else len(allowed),
        "cold": cold, "analyses": "analysis.sensitivity_layers" not in overrides, "wall_seconds": round(wall, 1),
        "main_process_peak_rss_gb": round(memory.peak_rss_gb(), 2),  # the process that ran every run so far
        "verification_step_seconds": metrics["timings_s"][VERIFY_STEP],
        "face_pass": face_pass,
        # the workers the pool ran, not those asked for: it runs fewer when memory holds fewer
        "pass_vs_engine_per_worker": (round(face_pass["wall_seconds"] / (engine / face_pass["workers"]), 3)
                                      if engine else None),
        "engine_images_per_second": {k: round(face_pass["computed_images"] / s, 1)
                                     for k, s in face_pass["engine_seconds"].items() if s},
        "pairs": v["float"]["pairs"], "folds_used": [f + 1 for f in v["folds_used"]],
        "accuracy": {k: [v[k]["accuracy"]["mean"], v[k]["accuracy"]["std"]] for k in ("float", "quantized")},
        "val_at_far": {k: v[k]["val_at_far"]["val"] for k in ("float", "quantized")},
        "auc": {k: v[k]["auc"] for k in ("float", "quantized")},
        "flipped_pairs": len(v["flipped_pairs"]), "embedding_drift": v["embedding_drift"],
        "timings_s": metrics["timings_s"],
    }
    print(json.dumps({k: figures[k] for k in ("workers", "cold", "analyses", "wall_seconds",
                                              "verification_step_seconds", "pass_vs_engine_per_worker")}),
          file=sys.stderr)
    return figures


def main() -> int:
    terminate_as_interrupt()  # SIGTERM (timeout, CI) stops the workers and cleans up, as Ctrl-C does
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", nargs="?", default="arcface-mobilefacenet")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--skip-analyses", action="store_true")
    parser.add_argument("--pin-cores", action="store_true", help="a run of N workers uses N cores only")
    parser.add_argument("--max-folds", type=int, metavar="N", help="only the first N LFW folds (a heavy model "
                        "measured in parts; the JSON says which folds)")
    args = parser.parse_args()
    folds: dict[str, object] = {"evaluate.verification.max_folds": args.max_folds} if args.max_folds else {}
    suffix = f"-folds1-{args.max_folds}" if args.max_folds else ""
    out = reports_dir() / "benchmarks" / f"lfw_scale-{args.recipe}{suffix}.json"
    plan: list[tuple[int, dict[str, object], bool]] = [(workers, NO_ANALYSES | folds, True)
                                                       for workers in args.workers]
    plan.append((max(args.workers), NO_ANALYSES | folds, False))
    if not args.skip_analyses:
        plan.append((max(args.workers), folds, True))
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rkverify-bench-") as scratch:
        for workers, overrides, cold in plan:
            runs.append(one_run(args.recipe, workers, overrides, cold, Path(scratch), args.pin_cores))
            # written after every run: a long benchmark keeps what it measured
            write_json_atomic(out, {"recipe": args.recipe, "measured_at": utc_now(), "tools": tool_versions(),
                                    "runs": runs, "scaling": scaling(runs)})
    print(out)
    return 0


def scaling(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cold analyses-off run against the one-worker cold run: speed-up and ratio to the ideal."""
    cold = [r for r in runs if r["cold"] and not r["analyses"]]
    one = next((r for r in cold if r["workers"] == 1), None)
    if one is None:
        return []
    rows = []
    for run in cold:
        if run is one:
            continue
        n = run["workers"]
        whole, face = (one["wall_seconds"], run["wall_seconds"]), (one["face_pass"]["wall_seconds"],
                                                                   run["face_pass"]["wall_seconds"])
        rows.append({"workers": n, "run_speedup": round(whole[0] / whole[1], 2),
                     "run_vs_ideal": round(whole[1] / (whole[0] / n), 3),
                     "face_pass_speedup": round(face[0] / face[1], 2),
                     "face_pass_vs_ideal": round(face[1] / (face[0] / n), 3)})
    return rows


if __name__ == "__main__":
    sys.exit(main())

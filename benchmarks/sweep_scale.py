"""Benchmark: sweep throughput with 1 and N workers (local processes), the same variants each time.

Runs a small real sweep of a recipe (default: retinaface, quantization.method x calibration size,
analyses off) once per worker count and writes reports/benchmarks/sweep_scale-<recipe>.json:
wall time, variants per minute, the speed-up against one worker and its ratio to the ideal
(wall(N) / (wall(1) / N); the goal is <= 1.15 for N = 2).

    python benchmarks/sweep_scale.py [recipe] [--workers 1 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.signals import terminate_as_interrupt  # noqa: E402
from core.artifacts import tool_versions, utc_now, write_json_atomic  # noqa: E402
from core.workspace import reports_dir  # noqa: E402
from verify.sweep import sweep  # noqa: E402

GRID: dict[str, list[Any]] = {"quantization.method": ["channel", "layer"], "quantization.calibration.size": [8, 16]}
LEAN = {"analysis.sensitivity_layers": 0, "analysis.preprocess_check": False, "evaluate.count": 3,
        "evaluate.layer_analysis_images": 1}


def main() -> int:
    terminate_as_interrupt()  # SIGTERM (timeout, CI) stops the workers and cleans up, as Ctrl-C does
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", nargs="?", default="retinaface")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="rkverify-sweep-bench-") as scratch:
        for workers in args.workers:
            started = time.perf_counter()
            folder = sweep(args.recipe, GRID, Path(scratch) / f"w{workers}", workers=workers, base=LEAN)
            wall = time.perf_counter() - started
            rows = json.loads((folder / "sweep.json").read_text())["rows"]
            runs.append({"workers": workers, "variants": len(rows), "wall_seconds": round(wall, 1),
                         "variants_per_minute": round(60 * len(rows) / wall, 2),
                         "failed": [r["variant"] for r in rows if "error" in r],
                         "peak_memory_mb": max(r.get("peak_memory_mb", 0) for r in rows)})
            print(runs[-1], file=sys.stderr)
    one = next((r for r in runs if r["workers"] == 1), None)
    for run in runs:
        if one and run is not one:
            run["speedup"] = round(one["wall_seconds"] / run["wall_seconds"], 2)
            run["vs_ideal"] = round(run["wall_seconds"] / (one["wall_seconds"] / run["workers"]), 3)
    out = reports_dir() / "benchmarks" / f"sweep_scale-{args.recipe}.json"
    write_json_atomic(out, {"recipe": args.recipe, "grid": GRID, "base": LEAN, "measured_at": utc_now(),
                            "tools": tool_versions(), "runs": runs})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

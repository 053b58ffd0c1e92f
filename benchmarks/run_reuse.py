"""Benchmark: a recipe's first run against its unchanged re-run, which reuses the first (verify/reuse.py).

Runs the recipe (default: retinaface, as shipped) twice in a scratch workspace with an empty cache:
the first builds and measures, the second finds the stored run by its key; a third re-run goes
through the command line (`rkverify.py run <recipe>`, a new process: what a user waits for). Writes
reports/benchmarks/run_reuse-<recipe>.json: the wall times, the key's time, what was reused, and
whether the reused measurements equal the first run's.

    python benchmarks/run_reuse.py [recipe]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.artifacts import tool_versions, utc_now, write_json_atomic  # noqa: E402
from core.recipe import PROJECT_ROOT  # noqa: E402
from core.workspace import CACHE_ENV, WORKSPACE_ENV, reports_dir  # noqa: E402
from verify.recipes import load  # noqa: E402
from verify.reuse import run_key  # noqa: E402
from verify.run import checked, run  # noqa: E402

SAME = ("detection", "outputs", "layers", "stages", "gates", "passed")  # measurement fields compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", nargs="?", default="retinaface")
    args = parser.parse_args()
    out = reports_dir() / "benchmarks" / f"run_reuse-{args.recipe}.json"  # the caller's workspace
    with tempfile.TemporaryDirectory(prefix="rkverify-reuse-bench-") as scratch:
        os.environ[WORKSPACE_ENV] = str(Path(scratch) / "workspace")
        os.environ[CACHE_ENV] = str(Path(scratch) / "cache")
        started = time.perf_counter()
        run_key(*checked(load(args.recipe)))
        key_seconds = time.perf_counter() - started
        walls, metrics = [], []
        for _ in range(2):
            started = time.perf_counter()
            run_dir = run(args.recipe)
            walls.append(round(time.perf_counter() - started, 2))
            metrics.append(json.loads((run_dir / "metrics.json").read_text()))
            print(f"{run_dir}: {walls[-1]} s", file=sys.stderr)
        started = time.perf_counter()
        cli = subprocess.run([sys.executable, str(PROJECT_ROOT / "rkverify.py"), "run", args.recipe],
                             capture_output=True, text=True, check=True)
        cli_seconds = round(time.perf_counter() - started, 2)
    first, second = metrics
    figures = {"recipe": args.recipe, "measured_at": utc_now(), "tools": tool_versions(),
               "first_run_seconds": walls[0], "rerun_seconds": walls[1], "speedup": round(walls[0] / walls[1], 1),
               "cli_rerun_seconds": cli_seconds, "cli_says": [line for line in cli.stderr.splitlines() if "reused" in line],
               "key_seconds": round(key_seconds, 3), "first_reused": "reused" in first,
               "rerun_reused": second.get("reused"),
               "same_measurements": all(first.get(k) == second.get(k) for k in SAME)}
    write_json_atomic(out, figures)
    print(json.dumps(figures, indent=2))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

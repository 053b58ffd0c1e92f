"""Every figure two runs' metrics.json disagree on, timings, ids and paths aside: shows that a change
of code (a refactor, a toolkit upgrade) left a recipe's figures as they were.

    python benchmarks/metrics_diff.py reports/<recipe>/<run-a> reports/<recipe>/<run-b> [--tolerance 1e-6]

Exit 0 when nothing differs beyond the tolerance, 1 otherwise (each difference on a line)."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

# keys that differ between any two runs of the same code: when and where a run happened, how long it took
VOLATILE = {"run_id", "created_at", "built_at", "timings_s", "speed", "build_seconds", "wall_seconds", "comparison",
            "recipe_path", "calibration_list", "run_dir", "inference_ms", "seconds", "log_file", "npu_ms",
            "artifact_sha256"}  # the .rknn file carries its build time: a new hash on every build


def differences(a: Any, b: Any, where: str, tolerance: float) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b), key=str):
            if key in VOLATILE or str(key).endswith(("_s", "_ms", "_seconds")):
                continue
            if key not in a or key not in b:
                found.append(f"{where}.{key}: only in {'second' if key not in a else 'first'}")
                continue
            found += differences(a[key], b[key], f"{where}.{key}", tolerance)
        return found
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]", tolerance)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        same = (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))
        return [] if same else [f"{where}: {a} vs {b}"]
    if isinstance(a, str) and isinstance(b, str) and ("/" in a or "/" in b):
        return [] if Path(a).name == Path(b).name else [f"{where}: {a} vs {b}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.0, help="relative tolerance on numbers")
    args = parser.parse_args()
    first, second = (json.loads((p / "metrics.json").read_text()) for p in (args.first, args.second))
    found = differences(first, second, "metrics", args.tolerance)
    for line in found:
        print(line)
    print(f"{len(found)} difference(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

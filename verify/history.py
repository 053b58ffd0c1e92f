"""Runs over time: compare a run with the previous one of its recipe, and the reports index."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from verify.results import RunResults


def runs_of(reports_dir: Path, recipe: str) -> list[Path]:
    """Finished run folders of a recipe, oldest first (run ids start with a UTC timestamp)."""
    folder = reports_dir / recipe
    return sorted(p for p in folder.iterdir() if (p / "metrics.json").is_file()) if folder.is_dir() else []


def compare_runs(now: dict[str, Any], current: Path, baseline: Path, tolerance: float) -> dict[str, Any]:
    """Per-output and per-layer cosine deltas (current - baseline); drops beyond `tolerance` flagged.

    `now` is the current run's metrics; `current` its folder (for layers.csv).
    """
    then = RunResults.read(baseline)
    earlier = then.outputs
    outputs = {}
    for name, figures in RunResults(now).outputs.items():
        if name in earlier:
            delta = figures.cosine - earlier[name].cosine
            outputs[name] = {"cosine_delta": delta, "sqnr_db_delta": figures.sqnr_db - earlier[name].sqnr_db,
                             "regressed": delta < -tolerance}
    layers: list[dict[str, Any]] = []
    if (current / "layers.csv").is_file() and (baseline / "layers.csv").is_file():
        merged = pd.read_csv(current / "layers.csv").merge(pd.read_csv(baseline / "layers.csv"), on="layer",
                                                            suffixes=("", "_baseline"))
        merged["delta"] = merged["single_cos_worst"] - merged["single_cos_worst_baseline"]
        worst = merged[merged["delta"] < -tolerance].sort_values("delta")
        layers = worst[["layer", "op", "single_cos_worst", "single_cos_worst_baseline", "delta"]].to_dict(orient="records")
    return {"baseline": baseline.name, "tolerance": tolerance, "outputs": outputs, "regressed_layers": layers,
            "regressed": any(o["regressed"] for o in outputs.values()) or bool(layers),
            "baseline_tools": then.tools, "tools_changed": then.metrics.get("tools") != now.get("tools")}


def index_rows(reports_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for folder in sorted(p for p in reports_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        runs = runs_of(reports_dir, folder.name)
        if not runs:
            continue
        entries = []
        for run in reversed(runs):
            results = RunResults.read(run)
            entries.append({"run_id": run.name, "href": f"{folder.name}/{run.name}/report.html",
                            "passed": results.passed, "created_at": results.created_at,
                            "failed_gates": [g.gate for g in results.gates if not g.passed],
                            "gated": bool(results.gates)})
        rows.append({"recipe": folder.name, "latest": entries[0], "runs": entries})
    return rows

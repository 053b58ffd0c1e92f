"""sweep.html from sweep.json: the variants' table, a Pareto plot, the best variant to use."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from core.artifacts import write_bytes_atomic  # noqa: E402
from verify.report.run_report import TEMPLATES, _data_uri, _png  # noqa: E402

# what a variant costs, against its task figure: (row key, axis label, scale)
COSTS = {"size": ("rknn_bytes", ".rknn size (MB)", 1e-6), "npu": ("npu_ms", "NPU time on the board (ms, eval_perf)", 1.0)}


def pareto(rows: list[dict[str, Any]], cost: str = "rknn_bytes") -> set[str]:
    """Variants no other variant beats on both task figure (higher) and `cost` (smaller)."""
    measured = [r for r in rows if "headline" in r and r.get(cost) is not None]
    return {r["variant"] for r in measured
            if not any(o["headline"] >= r["headline"] and o[cost] <= r[cost]
                       and (o["headline"], -o[cost]) != (r["headline"], -r[cost]) for o in measured)}


def pareto_png(rows: list[dict[str, Any]], front: set[str], cost: str = "size") -> bytes:
    key, label, scale = COSTS[cost]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for r in (r for r in rows if "headline" in r and r.get(key) is not None):
        colour = "#0a7d2c" if r["passed"] else "#b00020"
        ax.scatter(r[key] * scale, r["headline"], c=colour, s=60 if r["variant"] in front else 25,
                   marker="o" if r["variant"] in front else "x")
        ax.annotate(r["variant"], (r[key] * scale, r["headline"]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xlabel(label)
    ax.set_ylabel("task figure (accuracy / match rate / worst cosine)")
    ax.set_title("green: passes the gates; large dots: Pareto front")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def render_sweep(folder: Path) -> Path:
    summary = json.loads((folder / "sweep.json").read_text())
    rows = summary["rows"]
    front = pareto(rows)
    columns = sorted({k for r in rows for k in r.get("figures", {})})
    on_board = any(r.get("npu_ms") is not None for r in rows)  # the toolkit's NPU time: only with a board
    html = TEMPLATES.get_template("sweep.html").render(
        s=summary, rows=rows, columns=columns, front=front, on_board=on_board,
        plot=_data_uri(pareto_png(rows, front), "image/png") if any("headline" in r for r in rows) else None,
        npu_plot=_data_uri(pareto_png(rows, pareto(rows, "npu_ms"), "npu"), "image/png") if on_board else None,
        fmt=lambda v, d=4: "n/a" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v)))
    out = folder / "sweep.html"
    write_bytes_atomic(out, html.encode())
    return out

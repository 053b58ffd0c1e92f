"""sweep.html from sweep.json: the variants' table, a Pareto plot, the best variant to use."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from convert.artifacts import write_bytes_atomic  # noqa: E402
from verify.report import TEMPLATES, _data_uri, _png  # noqa: E402


def pareto(rows: list[dict[str, Any]]) -> set[str]:
    """Variants no other variant beats on both task figure (higher) and model size (smaller)."""
    measured = [r for r in rows if "headline" in r]
    return {r["variant"] for r in measured
            if not any(o["headline"] >= r["headline"] and o["rknn_bytes"] <= r["rknn_bytes"]
                       and (o["headline"], -o["rknn_bytes"]) != (r["headline"], -r["rknn_bytes"]) for o in measured)}


def pareto_png(rows: list[dict[str, Any]], front: set[str]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for r in (r for r in rows if "headline" in r):
        colour = "#0a7d2c" if r["passed"] else "#b00020"
        ax.scatter(r["rknn_bytes"] / 1e6, r["headline"], c=colour, s=60 if r["variant"] in front else 25,
                   marker="o" if r["variant"] in front else "x")
        ax.annotate(r["variant"], (r["rknn_bytes"] / 1e6, r["headline"]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xlabel(".rknn size (MB)")
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
    html = TEMPLATES.get_template("sweep.html").render(
        s=summary, rows=rows, columns=columns, front=front,
        plot=_data_uri(pareto_png(rows, front), "image/png") if any("headline" in r for r in rows) else None,
        fmt=lambda v, d=4: "n/a" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v)))
    out = folder / "sweep.html"
    write_bytes_atomic(out, html.encode())
    return out

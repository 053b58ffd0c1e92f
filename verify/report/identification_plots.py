"""Identification figures for the HTML report, drawn from metrics.json alone (re-renderable):
CMC and DIR-vs-FAR of every setting on one plot each, and rank-1 / DIR against gallery size."""
from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

STYLE = {"float/float": ("#2ca02c", "-", 1.8), "quantized/quantized": ("#d62728", "--", 1.3),
         "float/quantized": ("#1f77b4", ":", 1.6), "enrolled/quantized": ("#9467bd", "-.", 1.4)}


def _style(name: str) -> dict[str, Any]:
    colour, line, width = STYLE.get(name, (None, "-.", 1.2))
    return {"color": colour, "ls": line, "lw": width, "label": f"gallery {name.split('/')[0]}, probes {name.split('/')[1]}"}


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def cmc_png(identification: dict[str, Any]) -> bytes:
    fig, ax = plt.subplots(figsize=(5.6, 3.8), dpi=100)
    for name, row in identification["settings"].items():
        ax.plot(range(1, len(row["cmc"]) + 1), row["cmc"], marker=".", **_style(name))
    ax.set_xlabel("rank")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("identification rate (closed set)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def dir_far_png(identification: dict[str, Any]) -> bytes:
    fig, ax = plt.subplots(figsize=(5.6, 3.8), dpi=100)
    floor = 1.0 / max(1, identification["protocol"]["unknown_probes"])
    for name, row in identification["settings"].items():
        curve = row["dir_far_curve"]
        ax.plot([max(f, floor) for f in curve["far"]], curve["dir"], **_style(name))
    for far in identification["protocol"]["fars"]:
        ax.axvline(max(far, floor), color="#999", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("false alarm rate (unknown probes accepted, log)")
    ax.set_ylabel("detection and identification rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def gallery_size_png(identification: dict[str, Any]) -> bytes:
    curve = identification["gallery_size_curve"]
    sizes = [p["gallery"] for p in curve]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
    for ax, key, label in ((axes[0], "rank1", "rank-1"),
                           (axes[1], "dir", f"DIR @ FAR {identification['protocol']['fars'][0]:g}")):
        for name in identification["settings"]:
            ax.plot(sizes, [math.nan if p[name][key] is None else p[name][key] for p in curve], marker="o",
                    **_style(name))
        ax.set_xlabel("gallery size (enrolled people + distractors)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower left")
    return _png(fig)


def identification_plots(metrics: dict[str, Any]) -> dict[str, bytes]:
    """PNG of each identification figure, or nothing when the run measured no identification."""
    identification = metrics.get("identification")
    if not identification:
        return {}
    return {"cmc": cmc_png(identification), "dir_far": dir_far_png(identification),
            "gallery_size": gallery_size_png(identification)}

"""HTML report rendered from a run's data (metrics.json, layers.csv, overlay.jpg): re-renderable."""
from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import cv2
import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.artifacts import write_bytes_atomic  # noqa: E402
from core.pixels import read_bgr  # noqa: E402
from verify.face.recognition import PAIRS_CSV  # noqa: E402
from verify.report.identification_plots import identification_plots  # noqa: E402
from verify.report.netron_view import view_command  # noqa: E402
from verify.samples import few_lines  # noqa: E402
from verify.tasks import TASKS  # noqa: E402

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)
TEMPLATES.filters["add1"] = lambda n: n + 1  # folds are 0-based in the data, 1-based as View 2 numbers them
FLOAT_COLOUR, QUANT_COLOUR = (60, 180, 60), (40, 40, 230)  # BGR: green float, red quantized


def draw_overlay(image_path: Path, reference: Any, test: Any, out: Path) -> None:
    """Float faces in green (thick), quantized faces in red (thin), with their 5 landmarks."""
    image = read_bgr(image_path)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for faces, colour, width in ((reference, FLOAT_COLOUR, 2 * thickness), (test, QUANT_COLOUR, thickness)):
        for box, points in zip(faces.boxes, faces.landmarks):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, width)
            for x, y in points:
                cv2.circle(image, (int(round(x)), int(round(y))), 2 * thickness, colour, -1)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if ok:
        write_bytes_atomic(out, encoded.tobytes())


def layer_plot_png(layers: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(11, 3.6), dpi=100)
    ax.plot(layers["order"], layers["entire_cos_mean"], label="entire (accumulated), mean", color="#1f77b4")
    ax.plot(layers["order"], layers["entire_cos_worst"], label="entire, worst image", color="#1f77b4", ls=":")
    ax.plot(layers["order"], layers["single_cos_mean"], label="single layer, mean", color="#d62728")
    ax.plot(layers["order"], layers["single_cos_worst"], label="single layer, worst image", color="#d62728", ls=":")
    ax.set_xlabel("layer (graph order)")
    ax.set_ylabel("cosine vs float")
    ax.set_ylim(max(0.0, float(layers[["entire_cos_worst", "single_cos_worst"]].min().min()) - 0.02), 1.002)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def roc_points(distance: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every threshold: a pair is accepted when its distance is below it."""
    order = np.argsort(distance, kind="stable")
    accepted_same = np.cumsum(same[order]) / max(1, same.sum())
    accepted_different = np.cumsum(~same[order]) / max(1, (~same).sum())
    return accepted_different, accepted_same


def verification_plots_png(pairs: pd.DataFrame) -> tuple[bytes, bytes]:
    """ROC curves of every model on one plot (log FAR), and same/different distance histograms."""
    same = pairs["same"].to_numpy(bool)
    models = [c.removeprefix("distance_") for c in pairs.columns if c.startswith("distance_")]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
    floor = 1.0 / max(1, (~same).sum())
    for name in models:
        far, tar = roc_points(pairs[f"distance_{name}"].to_numpy(), same)
        ax.plot(np.maximum(far, floor), tar, label=name, lw=1.6 if name == "float" else 1.1,
                ls="-" if name == "float" else "--")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    lowest = min(roc_points(pairs[f"distance_{name}"].to_numpy(), same)[1][0] for name in models)
    ax.set_ylim(max(0.0, lowest - 0.05), 1.005)
    ax.set_xlabel("false accept rate (log)")
    ax.set_ylabel("true accept rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    fig.tight_layout()
    roc = _png(fig)
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.4), dpi=100, sharey=True, squeeze=False)
    bins = np.linspace(0, 4, 81)
    for ax, name in zip(axes[0], models):
        values = pairs[f"distance_{name}"].to_numpy()
        ax.hist(values[same], bins=bins, alpha=0.6, label="same person", color="#2ca02c")
        ax.hist(values[~same], bins=bins, alpha=0.6, label="different people", color="#d62728")
        ax.set_title(name)
        ax.set_xlabel("squared L2 distance")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return roc, _png(fig)


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def format_number(value: Any, digits: int = 4) -> str:
    """Fixed point where that reads well; 3 significant digits in exponent form for values it would show
    as 0.0000 or as hundreds of digits (a relative L2 of 4.2e283 was once printed in full)."""
    if value is None:
        return "n/a"
    if not isinstance(value, float):
        return str(value)
    if math.isfinite(value) and value != 0 and (abs(value) >= 1e6 or abs(value) < 10 ** -digits):
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def render_report(run_dir: Path) -> Path:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    layers_csv = run_dir / "layers.csv"
    layers = pd.read_csv(layers_csv) if layers_csv.exists() else None
    overlay = run_dir / "overlay.jpg"
    thumbs = {str(p.relative_to(run_dir)): _data_uri(p.read_bytes(), "image/jpeg") for p in run_dir.glob("flipped/*.jpg")}
    pairs_csv = run_dir / PAIRS_CSV
    roc = histograms = None
    if pairs_csv.exists():
        roc_png, histograms_png = verification_plots_png(pd.read_csv(pairs_csv))
        roc, histograms = _data_uri(roc_png, "image/png"), _data_uri(histograms_png, "image/png")
    html = TEMPLATES.get_template("report.html").render(
        m=metrics,
        layer_plot=_data_uri(layer_plot_png(layers), "image/png") if layers is not None else None,
        overlay=_data_uri(overlay.read_bytes(), "image/jpeg") if overlay.exists() else None,
        thumbs=thumbs,
        roc=roc,
        histograms=histograms,
        id_plots={k: _data_uri(png, "image/png") for k, png in identification_plots(metrics).items()},
        few_images=few_lines(metrics),
        task_note=TASKS[metrics["recipe_content"]["evaluate"]["task"]].report_note,
        view_command=view_command(metrics),
        fmt=format_number,
    )
    out = run_dir / "report.html"
    write_bytes_atomic(out, html.encode())
    return out


def render_index(reports_dir: Path) -> Path:
    """reports/index.html: every recipe, its latest status against its gates, links to each run."""
    from verify.history import index_rows

    out = reports_dir / "index.html"
    write_bytes_atomic(out, TEMPLATES.get_template("index.html").render(rows=index_rows(reports_dir)).encode())
    return out

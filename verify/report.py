"""HTML report rendered from a run's data (metrics.json, layers.csv, overlay.jpg): re-renderable."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import cv2
import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import pandas as pd  # noqa: E402

from convert.artifacts import write_bytes_atomic  # noqa: E402
from convert.preprocess import read_bgr  # noqa: E402
from verify.netron_view import view_command  # noqa: E402
from verify.samples import few_lines  # noqa: E402

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)
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


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def render_report(run_dir: Path) -> Path:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    layers_csv = run_dir / "layers.csv"
    layers = pd.read_csv(layers_csv) if layers_csv.exists() else None
    overlay = run_dir / "overlay.jpg"
    thumbs = {str(p.relative_to(run_dir)): _data_uri(p.read_bytes(), "image/jpeg") for p in run_dir.glob("flipped/*.jpg")}
    html = TEMPLATES.get_template("report.html").render(
        m=metrics,
        layer_plot=_data_uri(layer_plot_png(layers), "image/png") if layers is not None else None,
        overlay=_data_uri(overlay.read_bytes(), "image/jpeg") if overlay.exists() else None,
        thumbs=thumbs,
        few_images=few_lines(metrics),
        view_command=view_command(metrics),
        fmt=lambda v, d=4: "n/a" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v)),
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

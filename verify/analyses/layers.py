"""Per-layer drift: rknn-toolkit2's accuracy_analysis on K images, parsed and aggregated."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from convert.rknn_build import in_dir
from convert.toolkit_log import ANSI, last_error, toolkit_output_to
from core.compare import cosine, disagree

if TYPE_CHECKING:
    from verify.run_state import RunState

NUMBER = r"[-+\w.]+"
# simulator columns; with a board (target=...) the toolkit adds runtime columns: entire
# (golden vs board) and single_sim (this layer on the board vs the simulator)
ROW = re.compile(rf"^\[(?P<op>[^\]]+)\]\s+(?P<layer>\S+)\s+(?P<entire_cos>{NUMBER})\s*\|\s*(?P<entire_euc>{NUMBER})"
                 rf"\s+(?P<single_cos>{NUMBER})\s*\|\s*(?P<single_euc>{NUMBER})"
                 rf"(?:\s+(?P<board_entire_cos>{NUMBER})\s*\|\s*(?P<board_entire_euc>{NUMBER})"
                 rf"\s+(?P<single_sim_cos>{NUMBER})\s*\|\s*(?P<single_sim_euc>{NUMBER}))?\s*$")
ZERO_TENSOR = re.compile(r"[a-z]+_zero")
METRICS = ("entire_cos", "entire_euc", "single_cos", "single_euc")
BOARD_METRICS = ("board_entire_cos", "board_entire_euc", "single_sim_cos", "single_sim_euc")


def _figure(token: str) -> float:
    """A metric cell; the toolkit writes a word instead of a figure for an all-zero tensor (e.g. 'q_zero',
    seen on a random-weight MobileNet): NaN, which the worst-layer figures skip."""
    return float("nan") if ZERO_TENSOR.fullmatch(token) else float(token)


def parse_error_analysis(text: str) -> pd.DataFrame:
    """error_analysis.txt -> one row per layer, in graph order."""
    rows: list[dict[str, object]] = []
    for line in ANSI.sub("", text).splitlines():
        match = ROW.match(line.strip())
        if match:
            row: dict[str, Any] = {"order": len(rows), "op": match["op"], "layer": match["layer"]}
            row.update({k: _figure(match[k]) for k in METRICS})
            if match["single_sim_cos"] is not None:
                row.update({k: _figure(match[k]) for k in BOARD_METRICS})
            rows.append(row)
    if not rows:
        raise ValueError("no layer rows found in error_analysis.txt (format changed?)")
    return pd.DataFrame(rows)


def aggregate(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean and worst (min cosine, max euclidean) per layer over images; graph order kept."""
    stacked = pd.concat(tables, ignore_index=True)
    metrics = [m for m in METRICS + BOARD_METRICS if m in stacked]
    grouped = stacked.groupby(["order", "layer", "op"], sort=True)
    result = grouped[metrics].mean().add_suffix("_mean")
    worst = grouped.agg(**{f"{m}_worst": (m, "min" if m.endswith("_cos") else "max") for m in metrics})
    result = result.join(worst).reset_index()
    result["images"] = len(tables)
    return result




def tensor_stats(snapshot: Path) -> pd.DataFrame:
    """Per layer, from the dumped tensors (golden = float, simulator = quantized, accumulated):
    SQNR, relative L2, norm ratio, and the cosine/norm disagreement flag."""
    rows = []
    mapping = (snapshot / "map_name_to_file.txt").read_text().splitlines()[2:]
    for line in mapping:
        parts = line.split()
        if len(parts) != 2 or not (snapshot / "simulator" / parts[1]).is_file():
            continue
        golden = np.fromfile(snapshot / "golden" / parts[1], sep="\n")
        quantized = np.fromfile(snapshot / "simulator" / parts[1], sep="\n")
        if golden.shape != quantized.shape or not golden.size:
            continue
        noise = float(np.sum((golden - quantized) ** 2))
        signal = float(np.sum(golden ** 2))
        norm_ratio = float(np.linalg.norm(quantized) / np.sqrt(signal)) if signal else float("nan")
        cosine_value = cosine(golden, quantized)
        rows.append({"layer": parts[0], "sqnr_db": 10 * np.log10(signal / noise) if noise else float("inf"),
                     "relative_l2": np.sqrt(noise / signal) if signal else float("nan"), "norm_ratio": norm_ratio,
                     "cos_norm_disagree": disagree(cosine_value, norm_ratio)})
    return pd.DataFrame(rows)


def run_accuracy_analysis(rknn: Any, pixel_sets: list[np.ndarray], keep_dir: Path, log_file: Path,
                          target: str | None = None, device_id: str | None = None,
                          with_tensor_stats: bool = False) -> pd.DataFrame:
    """Run the toolkit's analysis once per image; keep each error_analysis.txt, drop the dumps.

    The dumps (every layer's tensors, ~0.8 GB for a 640x640 detector) go to a temp dir; with
    `with_tensor_stats` they are read first (first image only) for SQNR / rel. L2 / norm ratio.
    """
    tables, stats = [], None
    keep_dir.mkdir(parents=True, exist_ok=True)
    for index, pixels in enumerate(pixel_sets):
        with tempfile.TemporaryDirectory(prefix="rkverify-aa-") as scratch:
            npy = Path(scratch) / "input.npy"
            np.save(npy, pixels if pixels.shape[1] == 3 else pixels.transpose(0, 3, 1, 2))  # NCHW
            out_dir = Path(scratch) / "snapshot"
            # in the scratch folder: whatever the toolkit writes into the working directory goes with it
            with in_dir(Path(scratch)), toolkit_output_to(log_file):
                ret = rknn.accuracy_analysis(inputs=[str(npy)], output_dir=str(out_dir), target=target,
                                             device_id=device_id)
            if ret != 0:
                raise RuntimeError(f"rknn accuracy_analysis failed: {last_error(log_file)} (log: {log_file})")
            text = (out_dir / "error_analysis.txt").read_text()
            if with_tensor_stats and stats is None:
                stats = tensor_stats(out_dir)
        (keep_dir / f"error_analysis_{index}.txt").write_text(text)
        tables.append(parse_error_analysis(text))
    table = aggregate(tables)
    return table.merge(stats, on="layer", how="left") if stats is not None and len(stats) else table


def step(state: RunState) -> None:
    """accuracy_analysis on the first `evaluate.layer_analysis_images` inputs (on the board too when the
    recipe targets one); the whole table goes to layers.csv and state.layers, a summary to the metrics."""
    recipe = state.recipe
    images = state.images[: recipe.evaluate.layer_analysis_images]
    on_board = recipe.target.runtime == "board"
    layers = run_accuracy_analysis(state.artifacts.built.rknn, [im.pixels for im in images],
                                   state.run_dir / "accuracy_analysis", state.log_file,
                                   target=recipe.target.platform if on_board else None,
                                   device_id=recipe.target.device_id,
                                   with_tensor_stats=recipe.analysis.layer_tensor_stats)
    layers.to_csv(state.run_dir / "layers.csv", index=False)
    # NaN where a layer had no dump to read: eq(True) leaves it unflagged
    flagged = layers[layers["cos_norm_disagree"].eq(True)] if "cos_norm_disagree" in layers else layers.iloc[:0]
    state.layers = layers
    state.metrics["layers"] = {
        "count": len(layers), "images": len(images),
        "cos_norm_disagree": flagged.to_dict(orient="records"),
        "tensor_stats": "cos_norm_disagree" in layers,
        "worst_single_cos": float(layers["single_cos_worst"].min()),
        "worst_entire_cos": float(layers["entire_cos_worst"].min()),
        "worst_single_sim_cos": float(layers["single_sim_cos_worst"].min()) if on_board else None,
        "worst10": layers.nsmallest(10, "single_cos_worst").to_dict(orient="records")}

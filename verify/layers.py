"""Per-layer drift: rknn-toolkit2's accuracy_analysis on K images, parsed and aggregated."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from convert.toolkit_log import ANSI, last_error, toolkit_output_to

NUMBER = r"[-+\w.]+"
# simulator columns; with a board (target=...) the toolkit adds runtime columns: entire
# (golden vs board) and single_sim (this layer on the board vs the simulator)
ROW = re.compile(rf"^\[(?P<op>[^\]]+)\]\s+(?P<layer>\S+)\s+(?P<entire_cos>{NUMBER})\s*\|\s*(?P<entire_euc>{NUMBER})"
                 rf"\s+(?P<single_cos>{NUMBER})\s*\|\s*(?P<single_euc>{NUMBER})"
                 rf"(?:\s+(?P<board_entire_cos>{NUMBER})\s*\|\s*(?P<board_entire_euc>{NUMBER})"
                 rf"\s+(?P<single_sim_cos>{NUMBER})\s*\|\s*(?P<single_sim_euc>{NUMBER}))?\s*$")
METRICS = ("entire_cos", "entire_euc", "single_cos", "single_euc")
BOARD_METRICS = ("board_entire_cos", "board_entire_euc", "single_sim_cos", "single_sim_euc")


def parse_error_analysis(text: str) -> pd.DataFrame:
    """error_analysis.txt -> one row per layer, in graph order."""
    rows = []
    for line in ANSI.sub("", text).splitlines():
        match = ROW.match(line.strip())
        if match:
            row: dict[str, Any] = {"order": len(rows), "op": match["op"], "layer": match["layer"]}
            row.update({k: float(match[k]) for k in METRICS})
            if match["single_sim_cos"] is not None:
                row.update({k: float(match[k]) for k in BOARD_METRICS})
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


def run_accuracy_analysis(rknn: Any, pixel_sets: list[np.ndarray], keep_dir: Path, log_file: Path,
                          target: str | None = None, device_id: str | None = None) -> pd.DataFrame:
    """Run the toolkit's analysis once per image; keep each error_analysis.txt, drop the dumps.

    The dumps (every layer's tensors, ~0.8 GB for a 640x640 detector) go to a temp dir.
    """
    tables = []
    keep_dir.mkdir(parents=True, exist_ok=True)
    for index, pixels in enumerate(pixel_sets):
        with tempfile.TemporaryDirectory(prefix="rkverify-aa-") as scratch:
            npy = Path(scratch) / "input.npy"
            np.save(npy, pixels if pixels.shape[1] == 3 else pixels.transpose(0, 3, 1, 2))  # NCHW
            out_dir = Path(scratch) / "snapshot"
            with toolkit_output_to(log_file):
                ret = rknn.accuracy_analysis(inputs=[str(npy)], output_dir=str(out_dir), target=target,
                                             device_id=device_id)
            if ret != 0:
                raise RuntimeError(f"rknn accuracy_analysis failed: {last_error(log_file)} (log: {log_file})")
            text = (out_dir / "error_analysis.txt").read_text()
        (keep_dir / f"error_analysis_{index}.txt").write_text(text)
        tables.append(parse_error_analysis(text))
    return aggregate(tables)

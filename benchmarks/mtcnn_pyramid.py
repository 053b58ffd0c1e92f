"""Benchmark: P-Net's pyramid on the NPU, one build per level (per_scale) vs one build listing
every level's shape (rknn-toolkit2 dynamic_input), on the cascade recipe's eval photos.

Per mode: P-Net build seconds and .rknn bytes (summed over its builds), simulator seconds of P-Net
per frame (every level), P-Net's own output drift on the float cascade's levels, and the cascade
figures with P-Net alone quantized and with all three quantized. Writes
reports/benchmarks/mtcnn_pyramid-<mode>.json (one process per mode: each holds its own builds).

    python benchmarks/mtcnn_pyramid.py --pyramid per_scale|dynamic [--images N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.artifacts import tool_versions, utc_now, write_json_atomic  # noqa: E402
from core.pixels import read_bgr, resolve_images  # noqa: E402
from core.workspace import reports_dir  # noqa: E402
from verify.face.mtcnn_agreement import frame_of, measure  # noqa: E402
from verify.face.mtcnn_cascade import pyramid  # noqa: E402
from verify.face.mtcnn_nets import build_nets, cascade_config  # noqa: E402
from verify.face.mtcnn_recipe import load_cascade  # noqa: E402
from verify.run import convert_all  # noqa: E402


def pnet_seconds(nets, recipe, frames: list[np.ndarray]) -> float:
    """Mean simulator seconds of P-Net over all pyramid levels of one frame."""
    levels = pyramid(recipe.frame[0], recipe.frame[1], cascade_config(recipe))
    started = time.perf_counter()
    for frame in frames:
        for _, (h, w) in levels:
            level = cv2.resize(frame.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
            nets.quantized.pnet_at((h, w))(np.ascontiguousarray(level.transpose(2, 0, 1)[None]))
    return (time.perf_counter() - started) / len(frames)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyramid", choices=["per_scale", "dynamic"], required=True)
    parser.add_argument("--images", type=int, default=6)
    args = parser.parse_args()
    recipe, path, _ = load_cascade("mtcnn", args.pyramid)
    photos = resolve_images(recipe.evaluate.images, path, "evaluate.images")[: args.images]
    started = time.perf_counter()
    nets = build_nets(recipe, convert_all)
    setup = time.perf_counter() - started
    try:
        frames = [frame_of(read_bgr(p), recipe.frame)[0] for p in photos]
        seconds = pnet_seconds(nets, recipe, frames)
        figures = measure(recipe, nets, photos, reports_dir() / "benchmarks" / "mtcnn_pyramid", layers=False)
    finally:
        nets.release()
    pnet_builds = {k: v for k, v in nets.quantized.builds.items() if "pnet" in k}
    out = reports_dir() / "benchmarks" / f"mtcnn_pyramid-{args.pyramid}.json"
    write_json_atomic(out, {
        "pyramid": args.pyramid, "frame": recipe.frame, "images": len(photos), "measured_at": utc_now(),
        "tools": tool_versions(), "setup_seconds": round(setup, 1),
        "pnet_builds": len(pnet_builds),
        "pnet_build_seconds": round(sum(b["build_seconds"] for b in pnet_builds.values()), 2),
        "pnet_bytes": sum(b["bytes"] for b in pnet_builds.values()),
        "pnet_simulator_seconds_per_frame": round(seconds, 3),
        "pnet_output_drift": figures["net_outputs"].get("pnet"),
        "cascade_pnet_only": figures["cascade"]["pnet_only"],
        "cascade_all": figures["cascade"]["all"],
        "builds": nets.quantized.builds,
    })
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

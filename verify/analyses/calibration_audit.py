"""Calibration audit: what the calibration set holds (duplicates, near-duplicates, images smaller
than the input)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from core.pixels import read_bgr
from core.recipe import LoadedRecipe

if TYPE_CHECKING:
    from verify.run_state import RunState

NEAR_DUPLICATE_BITS = 3  # of a 64-bit average hash: same scene, re-encoded or resized


def _average_hash(bgr: np.ndarray) -> int:
    small = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (8, 8), interpolation=cv2.INTER_AREA)
    return int("".join("1" if v else "0" for v in (small > small.mean()).ravel()), 2)


def audit(loaded: LoadedRecipe, manifest: dict[str, Any]) -> dict[str, Any]:
    recipe = loaded.recipe
    entries = manifest["images"]
    height, width = recipe.model_input.height_width
    by_hash: dict[str, list[str]] = {}
    hashes, upscaled = [], []
    for entry in entries:
        by_hash.setdefault(entry["sha256"], []).append(entry["image"])
        image = read_bgr(Path(entry["image"]))
        hashes.append((entry["image"], _average_hash(image)))
        if image.shape[0] < height and image.shape[1] < width:
            upscaled.append(f"{Path(entry['image']).name} ({image.shape[1]}x{image.shape[0]})")
    duplicates = [paths for paths in by_hash.values() if len(paths) > 1]
    digest = {e["image"]: e["sha256"] for e in entries}
    near = [(a, b) for i, (a, ha) in enumerate(hashes) for b, hb in hashes[i + 1:]
            if bin(ha ^ hb).count("1") <= NEAR_DUPLICATE_BITS and digest[a] != digest[b]]
    warnings = []
    if manifest["used"] < manifest["requested"]:
        warnings.append(f"{manifest['used']} images used of {manifest['requested']} requested "
                        f"(only {manifest['available']} found)")
    if duplicates:
        warnings.append(f"{len(duplicates)} image(s) have byte-identical copies in the set: they weigh twice in the ranges")
    if near:
        warnings.append(f"{len(near)} pairs look alike (average hash within {NEAR_DUPLICATE_BITS} bits)")
    if upscaled:
        warnings.append(f"{len(upscaled)} images are smaller than the {width}x{height} input and get upscaled")
    return {"used": manifest["used"], "requested": manifest["requested"], "available": manifest["available"],
            "duplicates": duplicates, "near_duplicates": [[Path(a).name, Path(b).name] for a, b in near],
            "upscaled": upscaled, "warnings": warnings}


def step(state: RunState) -> None:
    state.metrics["calibration"]["audit"] = audit(state.loaded, state.artifacts.calibration)

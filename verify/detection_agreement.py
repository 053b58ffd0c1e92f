"""Detection agreement: float and quantized detections decoded and matched image by image."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convert.preprocess import PreparedImage
from convert.recipe import LoadedRecipe
from verify import detection
from verify.report import draw_overlay

if TYPE_CHECKING:
    from verify.run_state import RunState


def detection_agreement(loaded: LoadedRecipe, images: list[PreparedImage], float_out: list[dict],
                        quant_out: list[dict], run_dir: Path) -> dict[str, Any]:
    recipe = loaded.recipe
    cfg = recipe.evaluate.detection
    hw = recipe.model_input.height_width
    per_image, foreground, decoded = [], [], []
    for image, f, q in zip(images, float_out, quant_out):
        ref = detection.decode(f, recipe.outputs, cfg, hw, image.scale)
        test = detection.decode(q, recipe.outputs, cfg, hw, image.scale)
        decoded.append((image.path, ref, test))
        per_image.append({"image": str(image.path)} | detection.agreement(ref, test, cfg.match_iou))
        foreground.append(detection.foreground_agreement(f, q, recipe.outputs, cfg))
    busiest = max(decoded, key=lambda d: len(d[1].boxes))  # the image with most float faces
    if len(busiest[1].boxes):
        draw_overlay(*busiest, run_dir / "overlay.jpg")
    with_faces = [fg for fg in foreground if next(iter(fg.values()))["anchors"]]
    foreground_cosine = {name: float(np.mean([fg[name]["cosine"] for fg in with_faces])) if with_faces else float("nan")
                         for name in foreground[0]}
    return detection.summarise(per_image) | {"foreground_cosine": foreground_cosine, "per_image": per_image}


def step(state: RunState) -> None:
    state.metrics["detection"] = detection_agreement(state.loaded, state.images, state.outputs["float"],
                                                     state.outputs["quantized"], state.run_dir)

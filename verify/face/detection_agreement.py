"""Detection agreement: float and quantized detections decoded and matched image by image."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.pixels import PreparedImage
from core.recipe import LoadedRecipe
from verify.face import detection

# the image with most float faces and both sides' detections on it, for the report's overlay
Busiest = tuple[Path, detection.Detections, detection.Detections]


def detection_agreement(loaded: LoadedRecipe, images: list[PreparedImage], float_out: list[dict],
                        quant_out: list[dict]) -> tuple[dict[str, Any], Busiest | None]:
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
    busiest = max(decoded, key=lambda d: len(d[1].boxes))
    with_faces = [fg for fg in foreground if next(iter(fg.values()))["anchors"]]
    foreground_cosine = {name: float(np.mean([fg[name]["cosine"] for fg in with_faces])) if with_faces else float("nan")
                         for name in foreground[0]}
    summary = detection.summarise(per_image) | {"foreground_cosine": foreground_cosine, "per_image": per_image}
    return summary, busiest if len(busiest[1].boxes) else None

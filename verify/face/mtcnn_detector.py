"""MTCNN as a face finder for a recognizer: the rows verify.face.faces uses for RetinaFace.

`MtcnnDetector(nets, recipe).rows(bgr, "float" | "quantized")` gives (N, 15) rows
[x1, y1, x2, y2, score, 5 x (x, y) landmarks] in the photo's pixels, like verify.faces.detect_rows,
so verify.faces.choose / face_crop (and a box crop) take them as they are. The photo is
letterboxed into the cascade recipe's fixed frame first, as the NPU's fixed shapes need.
"""
from __future__ import annotations

import numpy as np

from verify.face.mtcnn_nets import Nets, cascade_config
from verify.face.mtcnn_recipe import CascadeRecipe
from verify.face.mtcnn_sides import cascade_of, frame_of

SIDES = {"float": set(), "quantized": {"pnet", "rnet", "onet"}}


class MtcnnDetector:
    def __init__(self, nets: Nets, recipe: CascadeRecipe) -> None:
        self.recipe = recipe
        config = cascade_config(recipe)
        self.cascades = {side: cascade_of(nets, config, quantized) for side, quantized in SIDES.items()}

    def rows(self, bgr: np.ndarray, side: str = "float") -> np.ndarray:
        frame, scale = frame_of(bgr, self.recipe.frame)
        faces = self.cascades[side].detect(frame)
        boxes = faces.boxes / scale
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, bgr.shape[1] - 1)  # the frame's grey margin is not the photo
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, bgr.shape[0] - 1)
        rows = np.hstack([boxes, faces.scores[:, None], faces.landmarks.reshape(-1, 10) / scale])
        return rows.astype(np.float32)

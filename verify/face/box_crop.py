"""FaceNet's face crop: the detector's box widened by a margin, cut out and resized to the input,
with no landmark warp (davidsandberg/facenet align_dataset_mtcnn.py, the way FaceNet was trained).

It needs only a box [x1, y1, x2, y2] in image pixels, the first four numbers of a detection row
(verify.face.faces): any detector that gives boxes (RetinaFace, MTCNN's O-Net) can feed it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.recipe import Verification


@dataclass(frozen=True)
class BoxCrop:
    margin: int  # pixels added to the box's width and height, half on each side, in image pixels
    square: bool  # widen the shorter side of the box to the longer one first (keeps the aspect)


def box_crop_settings(cfg: Verification) -> BoxCrop | None:
    """The recipe's box crop, None when it aligns by the landmark warp."""
    return BoxCrop(cfg.margin, cfg.square) if cfg.align == "box_crop" else None


def crop_box(bgr: np.ndarray, box: np.ndarray, settings: BoxCrop, size: tuple[int, int]) -> np.ndarray:
    """The box plus margin, clipped to the image, resized (bilinear) to `size` (h, w)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    if settings.square:
        cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
        x1, y1, x2, y2 = cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2
    height, width = bgr.shape[:2]
    half = settings.margin / 2
    # integer bounds as FaceNet takes them (np.int32 of the widened box, clipped to the image)
    left, top = int(max(x1 - half, 0)), int(max(y1 - half, 0))
    right, bottom = int(min(x2 + half, width)), int(min(y2 + half, height))
    if right - left < 2 or bottom - top < 2:
        raise ValueError(f"box {box[:4].tolist()} leaves no face inside the {width}x{height} image")
    crop = np.ascontiguousarray(bgr[top:bottom, left:right])
    return np.asarray(cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_LINEAR))

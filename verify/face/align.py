"""Face preparation for recognizers: 5-landmark similarity alignment, or a centre crop."""
from __future__ import annotations

import cv2
import numpy as np

# ArcFace / InsightFace 112x112 template: left eye, right eye, nose, left and right mouth corner
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


def align(bgr: np.ndarray, landmarks: np.ndarray, size: tuple[int, int], fit: str = "shorter_side") -> np.ndarray:
    """Similarity-warp so the 5 landmarks land on the ArcFace template placed in `size` (h, w).

    fit 'shorter_side': the template scaled to the shorter side, centred on the longer one;
    'height': scaled to the height, the width cut (or widened) about the template's centre.
    """
    height, width = size
    side = min(height, width) if fit == "shorter_side" else height
    template = ARCFACE_112 * np.float32(side / 112.0)
    template[:, 0] += (width - side) / 2.0
    template[:, 1] += (height - side) / 2.0
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), template, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("landmarks are degenerate: no similarity transform")
    return np.asarray(cv2.warpAffine(bgr, matrix, (width, height), borderValue=(0, 0, 0)))


def center_crop(bgr: np.ndarray, fraction: float, size: tuple[int, int]) -> np.ndarray:
    height, width = bgr.shape[:2]
    side = int(round(min(height, width) * fraction))
    top, left = (height - side) // 2, (width - side) // 2
    crop = bgr[top:top + side, left:left + side]
    return cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_AREA)

"""Normalisation computed per image on the host (`preprocess.per_image`), which no fixed
mean_values/std_values in an RKNN config can express.

Applied in convert.preprocess.prepare_array, so calibration .npy files, ONNX Runtime, the
native framework and the simulator all receive the same normalised float pixels; the recipe
then has mean 0 / std 1 (enforced by the schema), so nothing normalises a second time.
"""
from __future__ import annotations

import numpy as np


def prewhiten(pixels: np.ndarray) -> np.ndarray:
    """FaceNet's prewhitening over the whole image (every channel and pixel):
    (x - mean) / max(std, 1/sqrt(n)); the floor keeps a flat image from dividing by ~0."""
    x = pixels.astype(np.float32)
    std_floor = 1.0 / np.sqrt(x.size)
    return ((x - x.mean()) / max(float(x.std()), std_floor)).astype(np.float32)


PER_IMAGE = {"prewhiten": prewhiten}


def apply(pixels: np.ndarray, mode: str) -> np.ndarray:
    """`pixels` normalised by the recipe's per_image mode ('none': unchanged)."""
    return pixels if mode == "none" else PER_IMAGE[mode](pixels)

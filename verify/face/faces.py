"""Faces in a photo: every detection as one row, the choice of the face a dataset labels, its crop.

A row is [x1, y1, x2, y2, score, 5 x (x, y) landmarks] in original image pixels, so all the
faces of an image cache as one (N, 15) array, and the face choice can change without
re-running the detector.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from core.pixels import prepare_array
from core.recipe import Recipe
from core.runner import Runner
from verify.face import detection
from verify.face.align import align, center_crop
from verify.face.box_crop import BoxCrop, crop_box

FaceChoice = Literal["central", "largest", "score"]
ROW = 15


def detect_rows(bgr: np.ndarray, detector: Recipe, runner: Runner) -> np.ndarray:
    """Every face the detector finds in `bgr`, as (N, 15) rows."""
    image = prepare_array(bgr, detector.model_input, detector.preprocess, Path())
    faces = detection.decode(runner.infer(image.pixels), detector.outputs, detector.evaluate.detection,
                             detector.model_input.height_width, image.scale)
    return np.hstack([faces.boxes, faces.scores[:, None], faces.landmarks.reshape(-1, 10)]).astype(np.float32)


def choose(rows: np.ndarray, choice: FaceChoice, image_hw: tuple[int, int]) -> np.ndarray | None:
    """The 5 landmarks of the chosen face, None when there is none."""
    row = chosen_row(rows, choice, image_hw)
    return None if row is None else row[5:].reshape(5, 2)


def chosen_row(rows: np.ndarray, choice: FaceChoice, image_hw: tuple[int, int]) -> np.ndarray | None:
    """The detection row of the chosen face, None when there is none.

    central: the face whose box centre is nearest the image centre (LFW labels that face);
    largest: the largest box (a portrait); score: the most confident detection.
    """
    if len(rows) == 0:
        return None
    boxes = rows[:, :4]
    if choice == "central":
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        index = int(np.argmin(np.linalg.norm(centres - np.array(image_hw[::-1]) / 2, axis=1)))
    elif choice == "largest":
        index = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    else:
        index = int(np.argmax(rows[:, 4]))
    return rows[index]


def face_crop(bgr: np.ndarray, rows: np.ndarray | None, choice: FaceChoice, size: tuple[int, int],
              crop_fraction: float, fit: str = "shorter_side", box: BoxCrop | None = None) -> tuple[np.ndarray, bool]:
    """(aligned face, True), or (centre crop, False) when no face was found or no detector is used;
    `fit`: how the ArcFace template meets a non-square input (verify.align.align); `box`: crop the
    face's box with a margin instead of warping its landmarks (verify.face.box_crop)."""
    row = chosen_row(rows, choice, (bgr.shape[0], bgr.shape[1])) if rows is not None else None
    if row is None:
        return center_crop(bgr, crop_fraction, size), False
    if box is not None:
        return crop_box(bgr, row[:4], box, size), True
    return align(bgr, row[5:].reshape(5, 2), size, fit), True

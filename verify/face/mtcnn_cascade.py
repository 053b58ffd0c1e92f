"""MTCNN's cascade in numpy around three nets given as functions: the image pyramid, P-Net's
proposals and NMS, R-Net and O-Net refinement, the 5 landmarks.

The steps and constants are those of the `mtcnn` 1.0.0 package (its StagePNet / StageRNet /
StageONet and utils), so that the same nets give the same faces as the package's own
MTCNN.detect_faces: pyramid scales (12 / min_face_size) * 0.709^k with level sizes truncated,
AREA resampling, proposals at stride 2 with its 12-pixel cell (from 2i + 1 to 2i + 12), its NMS (a box is dropped when any
higher-scored box overlaps it above the threshold, kept or not), crops with TensorFlow's
crop_and_resize sampling (bilinear, outside the image = grey), box offsets scaled by side + 1.
The nets take pixels (NCHW, RGB, 0..255) as every runner here does; a runner applies the
recipe's (x - 127.5) / 128 itself.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

NetFn = Callable[[np.ndarray], list[np.ndarray]]  # NCHW pixels -> outputs in the package's order
GREY = 127.5  # what a crop reads outside the image: 0 after the nets' normalisation, as in the package
CELL, STRIDE = 12, 2  # P-Net's receptive field and output stride


@dataclass(frozen=True)
class CascadeConfig:
    """The package's defaults (MTCNN.detect_faces keyword arguments)."""

    min_face_size: int = 20
    scale_factor: float = 0.709
    threshold_pnet: float = 0.6
    threshold_rnet: float = 0.7
    threshold_onet: float = 0.8
    nms_pnet_level: float = 0.5
    nms_pnet_all: float = 0.7
    nms_rnet: float = 0.7
    nms_onet: float = 0.7


@dataclass
class Faces:
    """Detections in image pixels: boxes (N, 4) x1 y1 x2 y2, scores (N,), landmarks (N, 5, 2) in the
    ArcFace template's order (left eye, right eye, nose, left and right mouth corner, as seen)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    stages: dict[str, int] = field(default_factory=dict)  # candidates left after each net

    @staticmethod
    def empty() -> Faces:
        return Faces(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


def pyramid(height: int, width: int, config: CascadeConfig) -> list[tuple[float, tuple[int, int]]]:
    """(scale, (level height, level width)) for each pyramid level, as the package sizes them."""
    count = round(-((np.log(min(height, width) / CELL) / np.log(config.scale_factor)) + 1))
    scales = (CELL / config.min_face_size) * config.scale_factor ** np.arange(max(count, 0))
    return [(float(s), (int(height * s), int(width * s))) for s in scales]


def _nms(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept, `boxes` (N, 4) sorted by score already: the package's rule."""
    if len(boxes) == 0:
        return np.zeros(0, int)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inter_w = np.maximum(0, np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0]))
    inter_h = np.maximum(0, np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1]))
    inter = inter_w * inter_h
    base = area[:, None] + area[None, :] - inter if method == "union" else np.minimum(area[:, None], area[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = np.triu(inter / base > threshold, k=1)
    return np.flatnonzero(~overlap.any(axis=0))


def _by_score(rows: np.ndarray, score_column: int = 4) -> np.ndarray:
    return rows[np.argsort(rows[:, score_column])[::-1]]


def _square(rows: np.ndarray) -> np.ndarray:
    rows = rows.copy()
    w, h = rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]
    side = np.maximum(w, h)
    rows[:, 0] += w * 0.5 - side * 0.5
    rows[:, 1] += h * 0.5 - side * 0.5
    rows[:, 2], rows[:, 3] = rows[:, 0] + side, rows[:, 1] + side
    return rows


def _refine(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    rows = rows.copy()
    w, h = rows[:, 2] - rows[:, 0] + 1, rows[:, 3] - rows[:, 1] + 1
    rows[:, :4] += offsets * np.stack([w, h, w, h], axis=1)
    return rows


def crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) bilinear crops of `image` (H, W, 3 float) with TensorFlow crop_and_resize's
    sampling of boxes given, as the package gives them, in pixels divided by the image size."""
    height, width = image.shape[:2]
    steps = np.arange(size, dtype=np.float64) / (size - 1)
    out = np.full((len(boxes), size, size, 3), GREY, np.float32)
    for index, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.float64)):
        ys = (y1 / height + steps * (y2 - y1) / height) * (height - 1)
        xs = (x1 / width + steps * (x2 - x1) / width) * (width - 1)
        y_in, x_in = (ys >= 0) & (ys <= height - 1), (xs >= 0) & (xs <= width - 1)
        top, left = np.floor(ys).astype(int).clip(0, height - 1), np.floor(xs).astype(int).clip(0, width - 1)
        bottom, right = np.ceil(ys).astype(int).clip(0, height - 1), np.ceil(xs).astype(int).clip(0, width - 1)
        dy, dx = (ys - np.floor(ys))[:, None, None], (xs - np.floor(xs))[None, :, None]
        upper = image[top][:, left] * (1 - dx) + image[top][:, right] * dx
        lower = image[bottom][:, left] * (1 - dx) + image[bottom][:, right] * dx
        patch = upper * (1 - dy) + lower * dy
        mask = y_in[:, None] & x_in[None, :]
        out[index][mask] = patch[mask]
    return out


def _nchw(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


class Cascade:
    """`pnet(shape)` gives the P-Net function for a pyramid level of that (height, width): one build per
    shape, or one build for all; `rnet` and `onet` take one 24x24 / 48x48 crop (batch 1, as built)."""

    def __init__(self, pnet: Callable[[tuple[int, int]], NetFn], rnet: NetFn, onet: NetFn,
                 config: CascadeConfig = CascadeConfig()) -> None:
        self.pnet, self.rnet, self.onet, self.config = pnet, rnet, onet, config

    def proposals(self, image: np.ndarray) -> np.ndarray:
        """P-Net over the pyramid: (N, 5) x1 y1 x2 y2 score, squared, in image pixels."""
        cfg = self.config
        found = []
        for scale, shape in pyramid(image.shape[0], image.shape[1], cfg):
            level = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
            reg, prob = self.pnet(shape)(_nchw(level[None]))
            ys, xs = np.nonzero(prob[0, :, :, 1] > cfg.threshold_pnet)
            if len(ys) == 0:
                continue
            r = reg[0, ys, xs]
            # the package's cell: from stride * i + 1 to stride * i + 12, offsets scaled by its side 11
            x1, y1 = xs * STRIDE + 1 + r[:, 0] * (CELL - 1), ys * STRIDE + 1 + r[:, 1] * (CELL - 1)
            x2, y2 = xs * STRIDE + CELL + r[:, 2] * (CELL - 1), ys * STRIDE + CELL + r[:, 3] * (CELL - 1)
            rows = _by_score(np.stack([x1 / scale, y1 / scale, x2 / scale, y2 / scale, prob[0, ys, xs, 1]], axis=1))
            found.append(rows[_nms(rows[:, :4], cfg.nms_pnet_level)])
        if not found:
            return np.zeros((0, 5))
        rows = _by_score(np.concatenate(found))
        return _square(rows[_nms(rows[:, :4], cfg.nms_pnet_all)])

    def refine(self, image: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """R-Net on the proposals' 24x24 crops: (N, 5), squared."""
        if len(rows) == 0:
            return rows
        outputs = [self.rnet(_nchw(crop[None])) for crop in crops(image, rows, 24)]
        offsets = np.concatenate([o[0] for o in outputs])
        rows = _refine(np.column_stack([rows[:, :4], np.concatenate([o[1] for o in outputs])[:, 1]]), offsets)
        rows = _by_score(rows[rows[:, 4] > self.config.threshold_rnet])
        return _square(rows[_nms(rows[:, :4], self.config.nms_rnet)])

    def output(self, image: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """O-Net on R-Net's 48x48 crops: (N, 15) x1 y1 x2 y2 score, 5 landmark x, 5 landmark y."""
        if len(rows) == 0:
            return np.zeros((0, 15))
        outputs = [self.onet(_nchw(crop[None])) for crop in crops(image, rows, 48)]
        offsets, points = np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])
        scores = np.concatenate([o[2] for o in outputs])[:, 1]
        w, h = rows[:, 2:3] - rows[:, 0:1] + 1, rows[:, 3:4] - rows[:, 1:2] + 1
        points = np.concatenate([w * points[:, :5] + rows[:, 0:1] - 1, h * points[:, 5:] + rows[:, 1:2] - 1], axis=1)
        boxes = _refine(np.column_stack([rows[:, :4], scores]), offsets)
        rows = np.column_stack([boxes, points])
        rows = _by_score(rows[rows[:, 4] > self.config.threshold_onet])
        return rows[_nms(rows[:, :4], self.config.nms_onet, method="min")]

    def detect(self, rgb: np.ndarray) -> Faces:
        """Faces in an RGB image (H, W, 3, 0..255); boxes clipped to the image, as the package does."""
        image = rgb.astype(np.float32)
        proposed = self.proposals(image)
        refined = self.refine(image, proposed)
        final = self.output(image, refined)
        if len(final) == 0:
            faces = Faces.empty()
        else:
            height, width = image.shape[:2]
            boxes = final[:, :4].copy()
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width - 1)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height - 1)
            landmarks = np.stack([final[:, 5:10], final[:, 10:15]], axis=2)
            faces = Faces(boxes.astype(np.float32), final[:, 4].astype(np.float32), landmarks.astype(np.float32))
        faces.stages = {"pnet": len(proposed), "rnet": len(refined), "onet": len(final)}
        return faces

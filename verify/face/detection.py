"""RetinaFace decoding (priors, score threshold, NMS) and float-vs-quantized detection agreement."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.compare import output_agreement
from core.recipe import DetectionEval


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2 in original image pixels
    scores: np.ndarray  # (N,)
    landmarks: np.ndarray  # (N, 5, 2)


def priors(cfg: DetectionEval, height: int, width: int) -> np.ndarray:
    """(A, 4) anchors cx, cy, w, h normalised to the input, in the network's output order."""
    rows = []
    for step, sizes in zip(cfg.steps, cfg.min_sizes):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) * step / width, (ys.ravel() + 0.5) * step / height], axis=1)
        for_each = [np.hstack([centres, np.tile([s / width, s / height], (len(centres), 1))]) for s in sizes]
        rows.append(np.stack(for_each, axis=1).reshape(-1, 4))
    return np.concatenate(rows)


def insightface_anchors(cfg: DetectionEval, feature_sizes: list[tuple[int, int]]) -> np.ndarray:
    """(A, 4) anchors x1, y1, x2, y2 in input pixels, InsightFace's generate_anchors_fpn + anchors_plane:
    squares of base_size * scale around the base cell's centre, shifted by the stride, order (y, x, anchor)."""
    rows = []
    centre = (cfg.anchor_base_size - 1) / 2.0
    for stride, scales, (fh, fw) in zip(cfg.steps, cfg.anchor_scales, feature_sizes):
        half = (np.asarray(scales, dtype=np.float64) * cfg.anchor_base_size - 1) / 2.0
        base = np.stack([centre - half, centre - half, centre + half, centre + half], axis=1)  # (k, 4)
        ys, xs = np.meshgrid(np.arange(fh) * stride, np.arange(fw) * stride, indexing="ij")
        shifts = np.stack([xs, ys, xs, ys], axis=-1).reshape(-1, 1, 4)
        rows.append((shifts + base[None]).reshape(-1, 4))
    return np.concatenate(rows)


def per_anchor(outputs: dict[str, np.ndarray], names: list[str], cfg: DetectionEval
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face score (A,), box deltas (A, 4) and landmark deltas (A, 10) per anchor, anchor order.

    pytorch: three concatenated outputs (loc, conf, landmarks). insightface: per stride a class
    map (background of every anchor, then face), box and landmark maps, channels anchor-major.
    """
    if cfg.decoder == "pytorch":
        loc, conf, ldm = (outputs[n].reshape(-1, outputs[n].shape[-1]).astype(np.float64) for n in names)
        return conf[:, 1], loc, ldm.reshape(len(ldm), -1)
    scores, boxes, points = [], [], []
    for index in range(0, len(names), 3):
        cls, box, ldm = (outputs[n].astype(np.float64) for n in names[index:index + 3])
        anchors = cls.shape[1] // 2
        scores.append(cls[:, anchors:].transpose(0, 2, 3, 1).reshape(-1))
        boxes.append(box.transpose(0, 2, 3, 1).reshape(-1, 4))
        points.append(ldm.transpose(0, 2, 3, 1).reshape(-1, 10))
    return np.concatenate(scores), np.concatenate(boxes), np.concatenate(points)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[iou_one_to_many(boxes[best], boxes[rest]) <= threshold]
    return np.asarray(keep, dtype=int)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def decode(outputs: dict[str, np.ndarray], names: list[str], cfg: DetectionEval,
           input_hw: tuple[int, int], scale: float) -> Detections:
    """Outputs in recipe order (see `per_anchor`) -> faces in original image pixels."""
    scores, loc, ldm = per_anchor(outputs, names, cfg)
    height, width = input_hw
    if cfg.decoder == "pytorch":
        anchors = priors(cfg, height, width)
        if len(anchors) != len(loc):
            raise ValueError(f"{len(loc)} predictions but {len(anchors)} anchors: check evaluate.detection anchors")
        var_c, var_s = cfg.variance
        centres = anchors[:, :2] + loc[:, :2] * var_c * anchors[:, 2:]
        sizes = anchors[:, 2:] * np.exp(loc[:, 2:] * var_s)
        boxes = np.hstack([centres - sizes / 2, centres + sizes / 2]) * [width, height, width, height]
        points = anchors[:, None, :2] + ldm.reshape(-1, 5, 2) * var_c * anchors[:, None, 2:]
        points = points * [width, height]
    else:
        boxes, points = insightface_boxes(outputs, names, cfg, loc, ldm)
    selected = np.flatnonzero(scores > cfg.score_threshold)
    keep = selected[nms(boxes[selected], scores[selected], cfg.nms_threshold)]
    return Detections(boxes[keep] / scale, scores[keep], points[keep] / scale)


def insightface_boxes(outputs: dict[str, np.ndarray], names: list[str], cfg: DetectionEval,
                      loc: np.ndarray, ldm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """InsightFace's bbox_pred / landmark_pred: deltas in anchor widths from the anchor's centre
    (its inclusive-pixel convention: width = x2 - x1 + 1), no variances."""
    sizes = [(int(outputs[names[i]].shape[2]), int(outputs[names[i]].shape[3])) for i in range(0, len(names), 3)]
    anchors = insightface_anchors(cfg, sizes)
    if len(anchors) != len(loc):
        raise ValueError(f"{len(loc)} predictions but {len(anchors)} anchors: check evaluate.detection anchors")
    wh = anchors[:, 2:] - anchors[:, :2] + 1.0
    centres = anchors[:, :2] + 0.5 * (wh - 1.0)
    pred_centres = centres + loc[:, :2] * wh
    pred_half = 0.5 * (np.exp(loc[:, 2:]) * wh - 1.0)
    boxes = np.hstack([pred_centres - pred_half, pred_centres + pred_half])
    points = centres[:, None, :] + ldm.reshape(-1, 5, 2) * wh[:, None, :]
    return boxes, points


def foreground_agreement(reference: dict[str, np.ndarray], test: dict[str, np.ndarray], names: list[str],
                         cfg: DetectionEval) -> dict[str, dict[str, float]]:
    """Box and landmark agreement on the anchors the float model calls faces only.

    Raw box/landmark cosines are dominated by thousands of background anchors whose
    regressions nobody uses; these are the numbers that decide the boxes.
    """
    ref_scores, *ref_deltas = per_anchor(reference, names, cfg)
    _, *test_deltas = per_anchor(test, names, cfg)
    mask = ref_scores > cfg.score_threshold
    return {name: output_agreement(ref[mask], out[mask]) | {"anchors": int(mask.sum())}
            for name, ref, out in zip(("boxes", "landmarks"), ref_deltas, test_deltas)}


def agreement(reference: Detections, test: Detections, match_iou: float) -> dict[str, Any]:
    """Greedy one-to-one matching of test faces to reference faces (reference in score order)."""
    taken: set[int] = set()
    ious, landmark_errors, score_drifts = [], [], []
    for i in np.argsort(-reference.scores):
        if len(test.boxes) == 0:
            break
        overlaps = iou_one_to_many(reference.boxes[i], test.boxes)
        overlaps[list(taken)] = -1.0
        j = int(overlaps.argmax())
        if overlaps[j] < match_iou:
            continue
        taken.add(j)
        ious.append(float(overlaps[j]))
        box = reference.boxes[i]
        size = math.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1e-9))
        landmark_errors.append(float(np.linalg.norm(reference.landmarks[i] - test.landmarks[j], axis=1).mean() / size))
        score_drifts.append(float(abs(reference.scores[i] - test.scores[j])))
    return {
        "reference_faces": int(len(reference.boxes)),
        "test_faces": int(len(test.boxes)),
        "matched": len(ious),
        "ious": ious,
        "landmark_errors": landmark_errors,
        "score_drifts": score_drifts,
    }


def summarise(per_image: list[dict]) -> dict[str, float | int]:
    """Pool per-image agreement into the figures a report and a gate use."""
    ref = sum(d["reference_faces"] for d in per_image)
    test = sum(d["test_faces"] for d in per_image)
    matched = sum(d["matched"] for d in per_image)
    pooled = {k: [v for d in per_image for v in d[k]] for k in ("ious", "landmark_errors", "score_drifts")}

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {
        "float_faces": ref,
        "quantized_faces": test,
        "matched": matched,
        "match_rate": matched / ref if ref else float("nan"),
        "unmatched_quantized": test - matched,
        "mean_iou": mean(pooled["ious"]),
        "min_iou": min(pooled["ious"], default=float("nan")),
        "mean_landmark_error": mean(pooled["landmark_errors"]),
        "max_landmark_error": max(pooled["landmark_errors"], default=float("nan")),
        "mean_score_drift": mean(pooled["score_drifts"]),
    }

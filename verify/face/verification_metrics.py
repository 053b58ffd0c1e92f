"""The face verification protocol as insightface verification.py / facenet lfw.py: plain numpy.

Distances are squared L2 between L2-normalised embeddings (0..4). Accuracy: per fold, the
threshold is chosen on the other folds and applied to the held-out one.
"""
from __future__ import annotations

import numpy as np

THRESHOLDS = np.arange(0.0, 4.0, 0.01)


def l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def squared_distance(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.sum((l2_normalise(first) - l2_normalise(second)) ** 2, axis=1)


def accuracy_at(threshold: float, dist: np.ndarray, same: np.ndarray) -> float:
    return float(np.mean((dist < threshold) == same))


def best_threshold(dist: np.ndarray, same: np.ndarray) -> float:
    accuracies = [accuracy_at(t, dist, same) for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(accuracies))])


def kfold_accuracy(dist: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict[str, float | list]:
    per_fold, thresholds = [], []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        threshold = best_threshold(dist[train], same[train])
        thresholds.append(threshold)
        per_fold.append(accuracy_at(threshold, dist[test], same[test]))
    return {"mean": float(np.mean(per_fold)), "std": float(np.std(per_fold)),
            "per_fold": per_fold, "thresholds": thresholds}


def val_far(threshold: float, dist: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    accept = dist < threshold
    val = accept[same].mean() if same.any() else float("nan")
    far = accept[~same].mean() if (~same).any() else float("nan")
    return float(val), float(far)


def val_at_far(dist: np.ndarray, same: np.ndarray, folds: np.ndarray, target_far: float) -> dict[str, float]:
    """Per fold: threshold reaching `target_far` on the train folds (interpolated), VAL/FAR on the test fold."""
    vals, fars = [], []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        train_fars = np.array([val_far(t, dist[train], same[train])[1] for t in THRESHOLDS])
        if train_fars.max() >= target_far:
            # interpolate between FAR levels, each at the largest threshold that keeps it: with
            # ~2,000 different pairs FAR moves in steps of 5e-4, and a level's smallest threshold
            # (0.0 for FAR 0) would put the operating point far below where FAR really rises
            unique_fars, last = np.unique(train_fars[::-1], return_index=True)
            threshold = float(np.interp(target_far, unique_fars, THRESHOLDS[::-1][last]))
        else:
            threshold = 0.0
        val, far = val_far(threshold, dist[test], same[test])
        vals.append(val)
        fars.append(far)
    return {"val": float(np.mean(vals)), "val_std": float(np.std(vals)), "far": float(np.mean(fars)),
            "target_far": target_far}


def roc_auc(dist: np.ndarray, same: np.ndarray) -> float:
    """Probability that a same pair is closer than a different pair (ties count half)."""
    pos, neg = dist[same], dist[~same]
    if not len(pos) or not len(neg):
        return float("nan")
    closer = (pos[:, None] < neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(closer / (len(pos) * len(neg)))


def verification_report(dist: np.ndarray, same: np.ndarray, folds: np.ndarray, far: float) -> dict:
    return {"accuracy": kfold_accuracy(dist, same, folds), "val_at_far": val_at_far(dist, same, folds, far),
            "auc": roc_auc(dist, same), "pairs": int(len(dist)), "same_pairs": int(same.sum())}

"""Identification figures as plain numpy on search results, in the style of insightface's
verification.py: small functions on arrays, testable on hand-made sets.

Inputs are what a vector index returns: for each probe the labels of its k nearest gallery
entries (best first) and the score of the nearest (inner product of L2-normalised embeddings,
i.e. cosine: higher is closer). A probe is accepted as known when its top score is strictly
above the threshold.
"""
from __future__ import annotations

import numpy as np

NOT_FOUND = 0  # rank of a probe whose identity is not among its k nearest entries


def match_ranks(top_labels: np.ndarray, probe_labels: np.ndarray) -> np.ndarray:
    """1-based rank of each probe's first correct gallery entry among its top k (NOT_FOUND if none)."""
    hits = top_labels == probe_labels[:, None]
    found = hits.any(axis=1)
    return np.where(found, hits.argmax(axis=1) + 1, NOT_FOUND)


def cmc(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """Cumulative match characteristic: share of probes found at rank <= r, r = 1..max_rank."""
    if len(ranks) == 0:
        return np.full(max_rank, np.nan)
    found = ranks[ranks != NOT_FOUND]
    counts = np.bincount(found, minlength=max_rank + 1)[1:max_rank + 1]
    return np.cumsum(counts) / len(ranks)


def rank_k(ranks: np.ndarray, k: int) -> float:
    """Share of probes whose identity is among the k nearest entries (rank-1: the top answer is right)."""
    return float(np.mean((ranks != NOT_FOUND) & (ranks <= k))) if len(ranks) else float("nan")


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """The lowest threshold at which at most `far` of the unknown probes are accepted.

    Accepting means top score > threshold, so the threshold is the (floor(far * n) + 1)-th highest
    impostor score: at most floor(far * n) scores lie strictly above it. With fewer than 1/far
    impostors this is the highest impostor score (no false alarm at all): `far_resolution` says so.
    """
    if len(impostor_scores) == 0:
        raise ValueError("no unknown probes: DIR@FAR needs probes who are not enrolled")
    ordered = np.sort(impostor_scores)[::-1]
    allowed = int(np.floor(far * len(ordered) + 1e-9))
    return float(ordered[min(allowed, len(ordered) - 1)])


def false_alarm_rate(impostor_scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(impostor_scores > threshold))


def detection_identification_rate(genuine_scores: np.ndarray, genuine_ranks: np.ndarray, threshold: float) -> float:
    """Share of enrolled probes whose top answer is their own identity and scores above the threshold."""
    return float(np.mean((genuine_ranks == 1) & (genuine_scores > threshold))) if len(genuine_ranks) else float("nan")


def dir_at_far(genuine_scores: np.ndarray, genuine_ranks: np.ndarray, impostor_scores: np.ndarray,
               far: float) -> dict[str, float | int | bool]:
    """DIR at a false alarm rate, the threshold that gives it and the FAR actually reached."""
    threshold = threshold_at_far(impostor_scores, far)
    return {"far": far, "threshold": threshold,
            "dir": detection_identification_rate(genuine_scores, genuine_ranks, threshold),
            "achieved_far": false_alarm_rate(impostor_scores, threshold),
            "impostors": int(len(impostor_scores)),
            "far_resolution": bool(far * len(impostor_scores) >= 1)}


def dir_far_curve(genuine_scores: np.ndarray, genuine_ranks: np.ndarray,
                  impostor_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, DIR) at every impostor score taken as the threshold, FAR ascending."""
    thresholds = np.sort(np.unique(impostor_scores))[::-1]
    far = np.array([false_alarm_rate(impostor_scores, t) for t in thresholds])
    rate = np.array([detection_identification_rate(genuine_scores, genuine_ranks, t) for t in thresholds])
    return far, rate


def recall_at_1(approximate_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Share of queries whose nearest entry from an approximate index is the exact search's."""
    return float(np.mean(approximate_ids[:, 0] == exact_ids[:, 0])) if len(exact_ids) else float("nan")

"""Galleries compared side by side: each setting enrols the gallery with one model and searches
it with another ("float/quantized": a float-enrolled database searched by the device's quantized
model), through the same index; then the probes whose answer changes against "float/float", and
how far the threshold for a given false alarm rate moves.

Works on arrays: `Embedded` holds every model's L2-normalised embedding of every image involved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from verify.face.identification.index import IndexSettings, build_index, search
from verify.face.identification.metrics import (
    cmc,
    detection_identification_rate,
    dir_at_far,
    dir_far_curve,
    false_alarm_rate,
    match_ranks,
    rank_k,
    recall_at_1,
)

REFERENCE = "float/float"  # the model's own figure: the answers every other setting is compared with
NOBODY = -1  # the answer "not enrolled"
CURVE_POINTS = 200  # DIR-vs-FAR points kept for the plot


@dataclass(frozen=True)
class Embedded:
    """Embeddings (rows L2-normalised) of the protocol's images per model, and their labels."""

    vectors: dict[str, np.ndarray]  # model name -> (images, dim)
    labels: np.ndarray  # identity number of each image
    gallery: np.ndarray  # row numbers of enrolled images (known people first, then distractors)
    known: np.ndarray  # row numbers of known probes
    unknown: np.ndarray  # row numbers of unknown probes


def setting_name(gallery_model: str, probe_model: str) -> str:
    return f"{gallery_model}/{probe_model}"


@dataclass(frozen=True)
class Search:
    """One setting's search results: top-k labels and scores of every probe (known, then unknown)."""

    labels: np.ndarray
    scores: np.ndarray
    ids: np.ndarray


def run_search(data: Embedded, gallery_model: str, probe_model: str, settings: IndexSettings, k: int,
               gallery_rows: np.ndarray | None = None) -> Search:
    rows = data.gallery if gallery_rows is None else gallery_rows
    index = build_index(data.vectors[gallery_model][rows], settings)
    probes = np.concatenate([data.known, data.unknown])
    scores, ids = search(index, data.vectors[probe_model][probes], k)
    return Search(data.labels[rows][ids], scores, ids)


def figures(data: Embedded, found: Search, fars: list[float], max_rank: int) -> dict[str, Any]:
    """Rank-1/5, CMC, DIR@FAR (+ threshold) and the DIR-vs-FAR curve of one setting."""
    known = len(data.known)
    ranks = match_ranks(found.labels[:known], data.labels[data.known])
    genuine, impostor = found.scores[:known, 0], found.scores[known:, 0]
    far, rate = dir_far_curve(genuine, ranks, impostor)
    keep = np.unique(np.linspace(0, len(far) - 1, min(len(far), CURVE_POINTS)).astype(int)) if len(far) else []
    return {"rank1": rank_k(ranks, 1), "rank5": rank_k(ranks, 5),
            "cmc": [float(v) for v in cmc(ranks, max_rank)],
            # open set only with unknown probes (a fallback folder of a few people may have none)
            "dir_at_far": [dir_at_far(genuine, ranks, impostor, f) for f in fars] if len(impostor) else [],
            "dir_far_curve": {"far": [float(far[i]) for i in keep], "dir": [float(rate[i]) for i in keep]}}


def answers(found: Search, threshold: float) -> np.ndarray:  # -inf: no open set, every probe gets an identity
    """What the system says for each probe: the top entry's identity, or NOBODY at or below the threshold."""
    return np.where(found.scores[:, 0] > threshold, found.labels[:, 0], NOBODY)


def at_threshold(data: Embedded, found: Search, threshold: float) -> dict[str, float]:
    """FAR and DIR of a setting when it keeps another setting's threshold (what a device shipping the
    float threshold gets)."""
    known = len(data.known)
    ranks = match_ranks(found.labels[:known], data.labels[data.known])
    return {"threshold": threshold, "far": false_alarm_rate(found.scores[known:, 0], threshold),
            "dir": detection_identification_rate(found.scores[:known, 0], ranks, threshold)}


def changed(reference: Search, other: Search, threshold: float) -> dict[str, np.ndarray]:
    """Probes whose top-1 identity changes, and whose answer (identity or nobody at `threshold`) does."""
    return {"top1": np.flatnonzero(reference.labels[:, 0] != other.labels[:, 0]),
            "answer": np.flatnonzero(answers(reference, threshold) != answers(other, threshold))}


def compare(data: Embedded, pairs: list[tuple[str, str]], settings: IndexSettings, fars: list[float],
            max_rank: int) -> tuple[dict[str, dict[str, Any]], dict[str, Search]]:
    """Figures of every (gallery model, probe model) setting, each against REFERENCE (its first FAR's
    threshold is the one a device ships with); with an approximate index, also its recall@1 against
    exact search and the exact search's rank-1."""
    found = {setting_name(g, p): run_search(data, g, p, settings, max_rank) for g, p in pairs}
    reference = found[REFERENCE]
    table = {name: figures(data, result, fars, max_rank) for name, result in found.items()}
    shipped = [f["threshold"] for f in table[REFERENCE]["dir_at_far"]]
    for name, result in found.items():
        row = table[name]
        row["at_float_threshold"] = [at_threshold(data, result, t) for t in shipped]
        row["threshold_shift"] = [own["threshold"] - t for own, t in zip(row["dir_at_far"], shipped)]
        moved = changed(reference, result, shipped[0] if shipped else -np.inf)
        row["top1_changed"], row["answer_changed"] = len(moved["top1"]), len(moved["answer"])
        if settings.kind != "flat":
            g, p = name.split("/")
            exact = run_search(data, g, p, IndexSettings("flat"), max_rank)
            row["recall_at_1_vs_exact"] = recall_at_1(result.ids, exact.ids)
            row["exact_rank1"] = figures(data, exact, fars, max_rank)["rank1"]
    return table, found


def gallery_size_curve(data: Embedded, pairs: list[tuple[str, str]], enrolled: int, settings: IndexSettings,
                       fars: list[float], max_rank: int, points: int = 5) -> list[dict[str, Any]]:
    """The same figures as distractors join the gallery: `enrolled` known people first, then
    growing prefixes of the distractors (data.gallery holds both, in that order)."""
    distractors = len(data.gallery) - enrolled
    sizes = sorted({round(distractors * i / (points - 1)) for i in range(points)}) if distractors else [0]
    curve = []
    for extra in sizes:
        rows = data.gallery[:enrolled + extra]
        point: dict[str, Any] = {"distractors": extra, "gallery": len(rows)}
        for g, p in pairs:
            result = figures(data, run_search(data, g, p, settings, max_rank, rows), fars, max_rank)
            point[setting_name(g, p)] = {"rank1": result["rank1"],
                                         "dir": result["dir_at_far"][0]["dir"] if result["dir_at_far"] else None}
        curve.append(point)
    return curve

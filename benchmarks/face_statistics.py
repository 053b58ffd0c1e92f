"""What a real recognizer's embeddings look like, for the scale benchmark's synthetic gallery:
the spectrum (eigenvalues of the covariance of L2-normalised embeddings, and the mean in that
basis) and the cosine between two photos of one person (genuine pairs), from an embedding cache
of a run on LFW (models/cache/embeddings-*.npz, keyed by image sha256).

    python benchmarks/face_statistics.py models/cache/embeddings-<key>.npz --model "FaceNet ..." \
        [--lfw ../shared/lfw/lfw-deepfunneled] [--out benchmarks/face_statistics_512.json]

A face gallery is far from isotropic: its variance sits in a few tens of directions (FaceNet
512-d: participation ratio ~39), which is what an approximate index exploits.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.artifacts import sha256_bytes, sha256_file, utc_now, write_bytes_atomic  # noqa: E402
from verify.engines.cache import VectorCache  # noqa: E402

QUANTILES = 101  # genuine cosines kept as quantiles 0, 1, ..., 100 %


def fit(cache: Path, lfw: Path, model: str, seed: int = 0) -> dict[str, object]:
    people = {sha256_file(p): p.parent.name for p in sorted(lfw.glob("*/*.jpg"))}
    entries = {k: v[0] for k, v in VectorCache(cache).entries.items() if k in people}
    keys = sorted(entries)
    vectors = np.stack([entries[k] for k in keys]).astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    by_person: dict[str, list[int]] = defaultdict(list)
    for row, key in enumerate(keys):
        by_person[people[key]].append(row)
    genuine = np.array([vectors[a] @ vectors[b] for rows in by_person.values()
                        for a, b in itertools.combinations(rows, 2)])
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(keys), (2, 20_000))
    different = np.array([people[keys[i]] != people[keys[j]] for i, j in zip(a, b)])
    impostor = np.sum(vectors[a[different]] * vectors[b[different]], axis=1)
    mean = vectors.mean(axis=0)
    eigenvalues, basis = np.linalg.eigh(np.cov(vectors.T))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, basis = np.clip(eigenvalues[order], 0, None), basis[:, order]
    return {"model": model, "cache": cache.name, "cache_sha256": sha256_bytes(cache.read_bytes()),
            "images": len(keys), "people": len(by_person), "dim": vectors.shape[1], "created_at": utc_now(),
            "participation_ratio": float(eigenvalues.sum() ** 2 / (eigenvalues ** 2).sum()),
            "eigenvalues": [float(v) for v in eigenvalues], "mean_in_basis": [float(v) for v in basis.T @ mean],
            "genuine_pairs": len(genuine),
            "genuine_cosine_quantiles": [float(v) for v in np.quantile(genuine, np.linspace(0, 1, QUANTILES))],
            "impostor_cosine": {"mean": float(impostor.mean()), "sd": float(impostor.std()),
                                "p99_9": float(np.quantile(impostor, 0.999))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--model", required=True, help="which recognizer made the cache (recorded)")
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "lfw" / "lfw-deepfunneled")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "face_statistics_512.json")
    args = parser.parse_args()
    stats = fit(args.cache, args.lfw, args.model)
    write_bytes_atomic(args.out, (json.dumps(stats, indent=1) + "\n").encode())
    print({k: v for k, v in stats.items() if k not in ("eigenvalues", "mean_in_basis", "genuine_cosine_quantiles")})


if __name__ == "__main__":
    main()

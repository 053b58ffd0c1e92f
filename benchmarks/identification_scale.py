"""How the identification search scales: a gallery of N enrolled people (synthetic unit vectors:
no public face gallery of that size is at hand), probes in batches, exact and approximate Faiss
indexes. Writes reports/benchmarks/identification_scale.json: memory (index bytes and peak RSS),
build time, ms per probe, and recall@1 of each approximate index against exact search.

    python benchmarks/identification_scale.py [--gallery 1000000] [--dim 512] [--kinds flat ivf hnsw]

Each index kind runs in a process of its own (a clean peak memory reading); the gallery is made
in chunks from one seed, so every process sees the same vectors without a second copy in memory.
Probes are noisy copies of enrolled vectors (cosine ~0.71 to their own, as a face to its enrolled
image): random probes would have no meaningful nearest neighbour. Heavy at 1M: run it alone.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.artifacts import write_bytes_atomic  # noqa: E402
from verify.face.identification.index import IndexKind, IndexSettings, build_index, ivf_lists, search  # noqa: E402

OUT = ROOT / "reports" / "benchmarks" / "identification_scale.json"
CHUNK = 25_000  # small chunks keep the peak near the index itself
BATCH = 1000
TRAIN_POINTS = 64  # IVF k-means sample per list (Faiss asks for >= 39; 256 at 1M would copy the gallery)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def chunks(count: int, dim: int, seed: int):
    """The gallery, chunk by chunk, the same for every process."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, CHUNK):
        yield start, unit(rng.standard_normal((min(CHUNK, count - start), dim), dtype=np.float32))


def probes(count: int, dim: int, gallery: int, batches: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`batches` x BATCH probes, each an enrolled vector plus noise of the same norm; and whom each copies."""
    rng = np.random.default_rng(seed + 1)
    targets = np.sort(rng.choice(gallery, batches * BATCH, replace=False))
    wanted = np.zeros((len(targets), dim), dtype=np.float32)
    for start, block in chunks(count, dim, seed):
        inside = (targets >= start) & (targets < start + len(block))
        wanted[inside] = block[targets[inside] - start]
    noise = unit(rng.standard_normal(wanted.shape, dtype=np.float32))
    return unit(wanted + noise).astype(np.float32), targets


def sample(count: int, dim: int, seed: int, size: int) -> np.ndarray:
    """The first `size` gallery vectors (a training sample for IVF's k-means)."""
    parts, have = [], 0
    for _, block in chunks(count, dim, seed):
        parts.append(block[: size - have])
        have += len(parts[-1])
        if have >= size:
            break
    return np.concatenate(parts)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(index: Any, kind: str, count: int, dim: int, seed: int) -> None:
    """Add the gallery chunk by chunk (the chunks die with this call, before memory is read). A flat
    index gets one allocation of its final size, filled in place: adding chunk by chunk would grow its
    vector by doubling, copying it (a 1.5x peak)."""
    import faiss

    if kind != "flat":
        for _, block in chunks(count, dim, seed):
            index.add(block)
        return
    index.codes.resize(count * dim * 4)
    rows = faiss.rev_swig_ptr(index.codes.data(), count * dim * 4).view(np.float32).reshape(count, dim)
    for start, block in chunks(count, dim, seed):
        rows[start:start + len(block)] = block
    index.ntotal = count


def timed_search(index: object, queries: np.ndarray, batches: int) -> tuple[float, list[float], np.ndarray]:
    """(median ms per probe over the batches, each batch's, top-1 ids)."""
    per_batch, found = [], []
    for b in range(batches):
        started = time.perf_counter()
        _, ids = search(index, queries[b * BATCH:(b + 1) * BATCH], 1)
        per_batch.append((time.perf_counter() - started) / BATCH * 1e3)
        found.append(ids[:, 0])
    return float(np.median(per_batch)), per_batch, np.concatenate(found)


def measure(kind: str, count: int, dim: int, batches: int, seed: int, exact_ids: Path,
            nlist: int | None) -> dict[str, object]:
    """One index kind: build, search in batches; approximate kinds at several operating points
    (nprobe / efSearch), each with its recall@1 against the exact run's answers."""
    import faiss
    import psutil

    settings = IndexSettings(cast(IndexKind, kind), nlist=nlist)
    queries, targets = probes(count, dim, count, batches, seed)
    before = psutil.Process().memory_info().rss / 2**20
    started = time.perf_counter()
    if kind == "ivf":  # train on a sample, then add chunk by chunk (never the whole gallery twice)
        index = build_index(sample(count, dim, seed, TRAIN_POINTS * (nlist or ivf_lists(count))), settings)
        index.reset()  # keeps the trained lists, drops the sample
    else:
        index = build_index(np.zeros((0, dim), dtype=np.float32), settings)
    fill(index, kind, count, dim, seed)
    build_seconds = time.perf_counter() - started
    after = psutil.Process().memory_info().rss / 2**20
    result: dict[str, object] = {
        "kind": kind, "gallery": count, "dim": dim, "probes": batches * BATCH, "batch": BATCH,
        "build_seconds": round(build_seconds, 2), "vectors_mb": round(count * dim * 4 / 2**20, 1),
        "rss_before_index_mb": round(before, 1), "rss_with_index_mb": round(after, 1),
        "index_mb": round(after - before, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": faiss.omp_get_max_threads()}
    exact = np.load(exact_ids) if kind != "flat" and exact_ids.is_file() else None
    operating_points: dict[str, list[int | None]] = {"flat": [None], "ivf": [16, 32, 64, 128], "hnsw": [64, 128, 256]}
    points = operating_points[kind]
    rows = []
    for value in points:
        if kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = value
        elif kind == "hnsw":
            index.hnsw.efSearch = value
        ms, per_batch, top1 = timed_search(index, queries, batches)
        row: dict[str, object] = {"ms_per_probe": round(ms, 3), "ms_per_probe_batches": [round(v, 3) for v in per_batch],
                                  "top1_is_the_copied_vector": float(np.mean(top1 == targets))}
        if kind == "flat":
            np.save(exact_ids, top1)
        elif exact is not None:
            row["recall_at_1_vs_exact"] = float(np.mean(top1 == exact))
        if kind == "ivf":
            row |= {"nlist": faiss.extract_index_ivf(index).nlist, "nprobe": value}
        if kind == "hnsw":
            row |= {"M": settings.hnsw_m, "ef_search": value}
        rows.append(row)
    return result | {"operating_points": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"], choices=["flat", "ivf", "hnsw"])
    parser.add_argument("--nlist", type=int, help="IVF lists (default: about 4 sqrt(N), as a recipe gets)")
    parser.add_argument("--append", action="store_true", help="add these runs to the existing JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this kind in this process
    parser.add_argument("--exact-ids", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.gallery, args.dim, args.batches, args.seed, args.exact_ids,
                                 args.nlist)))
        return
    kinds = ["flat", *[k for k in args.kinds if k != "flat"]]  # exact first: the others' recall needs it
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for kind in kinds:
            command = [sys.executable, __file__, "--one", kind, "--gallery", str(args.gallery), "--dim", str(args.dim),
                       "--batches", str(args.batches), "--seed", str(args.seed),
                       "--exact-ids", str(Path(scratch) / "exact.npy"), *(["--nlist", str(args.nlist)] if args.nlist
                                                                          else [])]
            done = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]))
    if args.append and args.out.is_file():  # a new run of the same kind and size replaces the old one
        new = {(r["kind"], r["gallery"]) for r in runs}
        runs = [r for r in json.loads(args.out.read_text())["runs"] if (r["kind"], r["gallery"]) not in new] + runs
    report = {"benchmark": "identification_scale", "cpu_count": os.cpu_count(),
              "faiss": __import__("faiss").__version__, "numpy": np.__version__, "runs": runs}
    write_bytes_atomic(args.out, (json.dumps(report, indent=1) + "\n").encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

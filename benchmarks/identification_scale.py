"""How the identification search scales: a gallery of N enrolled people (synthetic unit vectors:
no public face gallery of that size is at hand), probes in batches, exact and approximate Faiss
indexes. Writes reports/benchmarks/identification_scale.json: memory (index bytes and peak RSS),
build time, ms per probe, and recall@1 of each approximate index against exact search.

    python benchmarks/identification_scale.py [--gallery 1000000] [--vectors face|isotropic]
        [--kinds flat ivf ivf_sq8 hnsw hnsw_fp16 hnsw_sq8] [--nlist 4096] [--nprobe 8 16 ...] [--ef 16 32 ...]
        [--ef-construction 200] [--index-dir DIR]

The vectors model what a face search sees (`--vectors face`, the default): enrolled faces drawn
from a Gaussian with a real recognizer's spectrum and mean (benchmarks/face_statistics_512.json,
FaceNet 512-d on LFW); half of each batch are genuine probes, another photo of an enrolled person,
at a cosine to their enrolled vector drawn from that recognizer's genuine LFW pairs (median 0.80,
5th percentile 0.58); the other half unknown people (new draws). `--vectors isotropic` draws
everything uniformly on the sphere instead (no structure for an index to use: the worst case).
Recall@1 against exact search is reported over the known probes (the target's figure), the
unknown ones, and all.

Each index kind runs in a process of its own (a clean peak memory reading); the gallery is made
in chunks from one seed, so every process sees the same vectors without a second copy in memory.
Heavy at 1M: run it alone (the machine's load average is recorded with each run). A 1M HNSW graph
takes over 20 minutes to build: `--index-dir` keeps each built index there and reads it back on the
next run of the same kind, vectors, size and build settings.
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
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.artifacts import atomic_path, utc_now, write_bytes_atomic  # noqa: E402
from verify.face.identification.index import (  # noqa: E402
    Codes,
    IndexKind,
    IndexSettings,
    ivf_lists,
    search,
    trained_index,
    tune,
)

OUT = ROOT / "reports" / "benchmarks" / "identification_scale.json"
CHUNK = 25_000  # small chunks keep the peak near the index itself
BATCH = 1000
STATS = ROOT / "benchmarks" / "face_statistics_512.json"
KINDS = ["flat", "ivf", "ivf_sq8", "hnsw", "hnsw_fp16", "hnsw_sq8"]
CODES: dict[str, Codes] = {"": "Flat", "fp16": "SQfp16", "sq8": "SQ8"}  # a kind's suffix: how it stores vectors
KNOWN_SHARE = 0.5  # of each batch: genuine probes of enrolled people; the rest are unknown people
TRAIN_POINTS = 64  # IVF k-means sample per list (Faiss asks for >= 39; 256 at 1M would copy the gallery)
SQ8_TRAIN_POINTS = 100_000  # HNSW's SQ8 codes: the sample their per-dimension ranges come from


def run_key(run: dict[str, Any]) -> tuple[str, str, int, int | None, int | None]:
    nlist = next((r.get("nlist") for r in run["operating_points"]), None)
    return run["kind"], run.get("vectors", "isotropic"), run["gallery"], nlist, run.get("ef_construction")


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@dataclass(frozen=True)
class Faces:
    """How vectors are drawn. "face": a Gaussian with a real recognizer's spectrum and mean
    (benchmarks/face_statistics.py), normalised; "isotropic": uniform on the sphere. Either way a
    genuine probe sits at a cosine drawn from the recognizer's genuine-pair cosines to its enrolled
    vector, the rest of it along a direction drawn like a face; an unknown probe is a new face."""

    model: str
    dim: int
    scale: np.ndarray  # per-coordinate standard deviation
    mean: np.ndarray
    genuine_quantiles: np.ndarray

    @staticmethod
    def load(model: str, dim: int, stats_file: Path) -> Faces:
        stats = json.loads(stats_file.read_text())
        if model == "face" and stats["dim"] != dim:
            raise SystemExit(f"{stats_file}: dim {stats['dim']}, asked --dim {dim}: fit statistics of a {dim}-d model")
        if model == "face":
            scale, mean = np.sqrt(np.asarray(stats["eigenvalues"])), np.asarray(stats["mean_in_basis"])
        else:
            scale, mean = np.full(dim, 1 / np.sqrt(dim)), np.zeros(dim)
        return Faces(model, dim, scale.astype(np.float32), mean.astype(np.float32),
                     np.asarray(stats["genuine_cosine_quantiles"]))

    def draw(self, rng: np.random.Generator, count: int, centred: bool = False) -> np.ndarray:
        rows = rng.standard_normal((count, self.dim), dtype=np.float32) * self.scale
        return unit(rows if centred else rows + self.mean).astype(np.float32)

    def genuine(self, rng: np.random.Generator, enrolled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Another photo of each enrolled person: (probes, their cosine to the enrolled vector)."""
        cosine = np.interp(rng.random(len(enrolled)), np.linspace(0, 1, len(self.genuine_quantiles)),
                           self.genuine_quantiles).astype(np.float32)[:, None]
        away = self.draw(rng, len(enrolled), centred=True)
        away = unit(away - np.sum(away * enrolled, axis=1, keepdims=True) * enrolled)
        return unit(cosine * enrolled + np.sqrt(1 - cosine ** 2) * away).astype(np.float32), cosine[:, 0]


def chunks(faces: Faces, count: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """The gallery, chunk by chunk, the same for every process."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, CHUNK):
        yield start, faces.draw(rng, min(CHUNK, count - start))


def probes(faces: Faces, count: int, batches: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`batches` x BATCH probes, each batch KNOWN_SHARE genuine probes of enrolled people, the rest
    unknown people; whom each genuine probe is (-1: unknown) and its cosine to them."""
    rng = np.random.default_rng(seed + 1)
    known = round(BATCH * KNOWN_SHARE)
    targets = np.sort(rng.choice(count, batches * known, replace=False))
    wanted = np.zeros((len(targets), faces.dim), dtype=np.float32)
    for start, block in chunks(faces, count, seed):
        inside = (targets >= start) & (targets < start + len(block))
        wanted[inside] = block[targets[inside] - start]
    genuine, cosine = faces.genuine(rng, wanted)
    unknown = faces.draw(rng, batches * (BATCH - known))
    order = rng.permutation(batches * known)  # each batch: its known probes, then its unknown ones
    queries, whom, cosines = [], [], []
    for b in range(batches):
        mine = order[b * known:(b + 1) * known]
        queries += [genuine[mine], unknown[b * (BATCH - known):(b + 1) * (BATCH - known)]]
        whom += [targets[mine], np.full(BATCH - known, -1)]
        cosines += [cosine[mine], np.full(BATCH - known, np.nan)]
    return np.concatenate(queries), np.concatenate(whom), np.concatenate(cosines)


def sample(faces: Faces, count: int, seed: int, size: int) -> np.ndarray:
    """The first `size` gallery vectors (a training sample for IVF's k-means)."""
    parts, have = [], 0
    for _, block in chunks(faces, count, seed):
        parts.append(block[: size - have])
        have += len(parts[-1])
        if have >= size:
            break
    return np.concatenate(parts)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(index: Any, kind: str, faces: Faces, count: int, seed: int) -> None:
    """Add the gallery chunk by chunk (the chunks die with this call, before memory is read). A flat
    index gets one allocation of its final size, filled in place: adding chunk by chunk would grow its
    vector by doubling, copying it (a 1.5x peak)."""
    import faiss

    if kind != "flat":
        for _, block in chunks(faces, count, seed):
            index.add(block)
        return
    size = count * faces.dim * 4
    index.codes.resize(size)
    rows = faiss.rev_swig_ptr(index.codes.data(), size).view(np.float32).reshape(count, faces.dim)
    for start, block in chunks(faces, count, seed):
        rows[start:start + len(block)] = block
    index.ntotal = count


def timed_search(index: object, queries: np.ndarray, batches: int) -> tuple[float, list[float], float, np.ndarray]:
    """(median ms per probe over the batches, each batch's, median CPU ms per probe over all threads,
    top-1 ids). CPU time does not grow when other jobs share the cores; wall time does."""
    per_batch, cpu, found = [], [], []
    for b in range(batches):
        started, cpu_started = time.perf_counter(), time.process_time()
        _, ids = search(index, queries[b * BATCH:(b + 1) * BATCH], 1)
        per_batch.append((time.perf_counter() - started) / BATCH * 1e3)
        cpu.append((time.process_time() - cpu_started) / BATCH * 1e3)
        found.append(ids[:, 0])
    return float(np.median(per_batch)), per_batch, float(np.median(cpu)), np.concatenate(found)


def settings_of(kind: str, nlist: int | None, hnsw_m: int, ef_construction: int) -> IndexSettings:
    """A benchmark kind as the recipe's index settings: hnsw_fp16 is hnsw with SQfp16 codes, and so on."""
    base, _, codes = kind.partition("_")
    return IndexSettings(cast(IndexKind, base), nlist=nlist, hnsw_m=hnsw_m, ef_construction=ef_construction,
                         codes=CODES[codes])


def build(settings: IndexSettings, faces: Faces, count: int, seed: int) -> Any:
    """Train on a sample (IVF's lists, SQ8's ranges), then add chunk by chunk (never the whole gallery twice)."""
    size = (TRAIN_POINTS * (settings.nlist or ivf_lists(count)) if settings.kind == "ivf"
            else SQ8_TRAIN_POINTS if settings.codes == "SQ8" else 0)
    index = trained_index(sample(faces, count, seed, size) if size else np.zeros((0, faces.dim), np.float32), settings)
    fill(index, settings.kind, faces, count, seed)
    return index


def measure(kind: str, settings: IndexSettings, faces: Faces, count: int, batches: int, seed: int, exact_ids: Path,
            points: list[int], index_dir: Path | None) -> dict[str, object]:
    """One index kind: build (or read from `index_dir`), search in batches; approximate kinds at several
    operating points (nprobe / efSearch), each with its recall@1 against the exact run's answers, over
    the known probes (the ones whose answer is an identity: the target's figure) and the unknown ones."""
    import faiss
    import psutil

    queries, whom, cosine = probes(faces, count, batches, seed)
    known = whom >= 0
    name = (f"{kind}-{faces.model}-{count}-seed{seed}-M{settings.hnsw_m}-efc{settings.ef_construction}"
            f"-nlist{settings.nlist}.faiss")
    saved = index_dir / name if index_dir and kind != "flat" else None  # exact search builds in seconds
    read = saved is not None and saved.is_file()
    before = psutil.Process().memory_info().rss / 2**20
    started = time.perf_counter()
    if saved and read:
        index = faiss.read_index(str(saved))
    else:
        index = build(settings, faces, count, seed)
        if saved:
            with atomic_path(saved) as partial:  # an interrupted write never reads back as an index
                faiss.write_index(index, str(partial))
    build_seconds = time.perf_counter() - started
    after = psutil.Process().memory_info().rss / 2**20
    result: dict[str, object] = {
        "kind": kind, "vectors": faces.model, "gallery": count, "dim": faces.dim, "probes": batches * BATCH,
        "known_probes": int(known.sum()), "batch": BATCH,
        "genuine_cosine": {"median": float(np.median(cosine[known])), "p5": float(np.quantile(cosine[known], 0.05))},
        "read_seconds" if read else "build_seconds": round(build_seconds, 2), "vectors_mb": round(count * faces.dim * 4 / 2**20, 1),
        "rss_before_index_mb": round(before, 1), "rss_with_index_mb": round(after, 1),
        "index_mb": round(after - before, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": faiss.omp_get_max_threads(), "load_average_at_search": os.getloadavg()[0]}
    if settings.kind == "hnsw":
        result |= {"M": settings.hnsw_m, "ef_construction": settings.ef_construction, "codes": settings.codes}
    exact = np.load(exact_ids) if kind != "flat" and exact_ids.is_file() else None
    rows = []
    for value in points if kind != "flat" else [0]:
        tune(index, replace(settings, nprobe=value, ef_search=value))
        ms, per_batch, cpu_ms, top1 = timed_search(index, queries, batches)
        row: dict[str, object] = {"ms_per_probe": round(ms, 3),
                                  "ms_per_probe_batches": [round(v, 3) for v in per_batch],
                                  "cpu_ms_per_probe": round(cpu_ms, 3),
                                  "known_top1_is_enrolled": float(np.mean(top1[known] == whom[known]))}
        if kind == "flat":
            np.save(exact_ids, top1)
        elif exact is not None:
            row |= {"recall_at_1_vs_exact": float(np.mean(top1[known] == exact[known])),
                    "recall_at_1_unknown": float(np.mean(top1[~known] == exact[~known])),
                    "recall_at_1_all": float(np.mean(top1 == exact))}
        if settings.kind == "ivf":
            row |= {"nlist": faiss.extract_index_ivf(index).nlist, "nprobe": value}
        if settings.kind == "hnsw":
            row |= {"M": settings.hnsw_m, "ef_search": value}
        rows.append(row)
    return result | {"operating_points": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vectors", choices=["face", "isotropic"], default="face",
                        help="face: a real recognizer's spectrum (--stats); isotropic: uniform on the sphere")
    parser.add_argument("--stats", type=Path, default=STATS, help="benchmarks/face_statistics.py's output")
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivf", "hnsw"], choices=KINDS)
    parser.add_argument("--nlist", type=int, help="IVF lists (default: about 4 sqrt(N), as a recipe gets)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 48, 64, 96, 128, 256])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=IndexSettings().ef_construction)
    parser.add_argument("--index-dir", type=Path, help="keep built indexes here; read them back when present")
    parser.add_argument("--append", action="store_true", help="add these runs to the existing JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this kind in this process
    parser.add_argument("--exact-ids", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    faces = Faces.load(args.vectors, args.dim, args.stats)
    if args.one:
        points = args.nprobe if args.one.startswith("ivf") else args.ef
        settings = settings_of(args.one, args.nlist, args.hnsw_m, args.ef_construction)
        print(json.dumps(measure(args.one, settings, faces, args.gallery, args.batches, args.seed, args.exact_ids,
                                 points, args.index_dir)))
        return
    kinds = ["flat", *[k for k in args.kinds if k != "flat"]]  # exact first: the others' recall needs it
    runs = []
    passed = sys.argv[1:]
    with tempfile.TemporaryDirectory() as scratch:
        for kind in kinds:
            command = [sys.executable, __file__, *passed, "--one", kind, "--exact-ids", str(Path(scratch) / "exact.npy")]
            done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=os.environ)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "operating_points"}))
            for row in runs[-1]["operating_points"]:
                print("   ", json.dumps({k: v for k, v in row.items() if k != "ms_per_probe_batches"}))
    if args.append and args.out.is_file():  # a new run of the same kind, vectors and size replaces the old one
        new = {run_key(r) for r in runs}
        runs = [r for r in json.loads(args.out.read_text())["runs"] if run_key(r) not in new] + runs
    stats = json.loads(args.stats.read_text())
    report = {"benchmark": "identification_scale", "cpu_count": os.cpu_count(),
              "faiss": __import__("faiss").__version__, "numpy": np.__version__, "created_at": utc_now(),
              "face_statistics": {k: stats[k] for k in ("model", "cache", "cache_sha256", "images", "people",
                                                        "participation_ratio", "impostor_cosine")},
              "runs": runs}
    write_bytes_atomic(args.out, (json.dumps(report, indent=1) + "\n").encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""The gallery as a real vector index (Faiss): exact inner-product search, or an approximate
index (IVF or HNSW) whose cost against exact search is measured as recall@1.

Embeddings are L2-normalised, so inner product is cosine similarity and the exact index
(IndexFlatIP) gives the same answers as a numpy scan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

IndexKind = Literal["flat", "ivf", "hnsw"]
# how ivf/hnsw store enrolled vectors: float32, float16 (2x less memory), or 8 bits per dimension (4x less)
Codes = Literal["Flat", "SQfp16", "SQ8"]
IVF_POINTS_PER_LIST = 39  # Faiss' k-means wants at least this many training points per centroid
REFINE_FACTOR = 4  # hnsw with SQ8 codes: candidates per answer re-ranked with the float32 vectors


@dataclass(frozen=True)
class IndexSettings:
    kind: IndexKind = "flat"
    nprobe: int = 16  # IVF: lists searched per query
    ef_search: int = 192  # HNSW: candidate list size at search time (recall@1 0.99 on 1M, README "Scale")
    # HNSW: candidate list size while linking each new entry. Faiss' default (40) builds a graph that needs
    # about twice the efSearch for recall@1 0.99 on 1M faces (README "Scale")
    ef_construction: int = 200
    hnsw_m: int = 32  # HNSW: links per node
    nlist: int | None = None  # IVF: lists (None: ivf_lists(gallery size))
    codes: Codes = "Flat"


def ivf_lists(count: int) -> int:
    """About 4 sqrt(n) lists (Faiss' guideline), never more than the gallery can train."""
    return max(1, min(int(4 * math.sqrt(count)), count // IVF_POINTS_PER_LIST))


def build_index(vectors: np.ndarray, settings: IndexSettings = IndexSettings()) -> faiss.Index:
    """An inner-product index over `vectors` (rows: L2-normalised float32 embeddings)."""
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    index = trained_index(data, settings)
    index.add(data)
    return index


def trained_index(sample: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """An empty index, trained on `sample` (IVF's lists, SQ8's ranges) and set to `settings`."""
    dim = sample.shape[1]
    if settings.kind == "flat":
        return faiss.IndexFlatIP(dim)
    # the factory's index owns what it wraps (no SWIG lifetime to manage)
    if settings.kind == "ivf":
        lists = settings.nlist or ivf_lists(len(sample))
        index = faiss.index_factory(dim, f"IVF{lists},{settings.codes}", faiss.METRIC_INNER_PRODUCT)
    elif settings.kind == "hnsw":
        # SQ8 codes only walk the graph; the float32 vectors (RFlat) rank its candidates, so scores stay exact
        # (float16 scores are within 1e-3 of them: no second copy)
        refine = ",RFlat" if settings.codes == "SQ8" else ""
        index = faiss.index_factory(dim, f"HNSW{settings.hnsw_m},{settings.codes}{refine}",
                                    faiss.METRIC_INNER_PRODUCT)
        graph = faiss.downcast_index(index.base_index if refine else index)
        graph.hnsw.efConstruction = settings.ef_construction
    else:
        raise ValueError(f"unknown index kind {settings.kind!r}")
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    tune(index, settings)
    return index


def tune(index: faiss.Index, settings: IndexSettings) -> None:
    """Set the search-time parameters of `settings` (nprobe, efSearch) on a built index."""
    space = faiss.ParameterSpace()
    if settings.kind == "ivf":
        space.set_index_parameter(index, "nprobe", settings.nprobe)
    elif settings.kind == "hnsw":
        space.set_index_parameter(index, "efSearch", settings.ef_search)
        if settings.codes == "SQ8":
            space.set_index_parameter(index, "k_factor_rf", REFINE_FACTOR)


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k nearest entries of each query, best first; k is capped at the gallery size."""
    k = max(1, min(k, index.ntotal))
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, ids

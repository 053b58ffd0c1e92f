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
IvfCodes = Literal["Flat", "SQ8"]  # IVF list entries: float32 vectors, or 8 bits per dimension (4x less memory)
IVF_POINTS_PER_LIST = 39  # Faiss' k-means wants at least this many training points per centroid


@dataclass(frozen=True)
class IndexSettings:
    kind: IndexKind = "flat"
    nprobe: int = 16  # IVF: lists searched per query
    ef_search: int = 384  # HNSW: candidate list size at search time (recall@1 0.99 on 1M, README "Scale")
    hnsw_m: int = 32  # HNSW: links per node
    nlist: int | None = None  # IVF: lists (None: ivf_lists(gallery size))
    ivf_codes: IvfCodes = "Flat"


def ivf_lists(count: int) -> int:
    """About 4 sqrt(n) lists (Faiss' guideline), never more than the gallery can train."""
    return max(1, min(int(4 * math.sqrt(count)), count // IVF_POINTS_PER_LIST))


def build_index(vectors: np.ndarray, settings: IndexSettings = IndexSettings()) -> faiss.Index:
    """An inner-product index over `vectors` (rows: L2-normalised float32 embeddings)."""
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = data.shape[1]
    index: faiss.Index
    if settings.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif settings.kind == "ivf":
        # the factory's index owns its coarse quantizer (no SWIG lifetime to manage)
        lists = settings.nlist or ivf_lists(len(data))
        index = faiss.index_factory(dim, f"IVF{lists},{settings.ivf_codes}", faiss.METRIC_INNER_PRODUCT)
        index.train(data)
        faiss.extract_index_ivf(index).nprobe = settings.nprobe
    elif settings.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = settings.ef_search
    else:
        raise ValueError(f"unknown index kind {settings.kind!r}")
    index.add(data)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k nearest entries of each query, best first; k is capped at the gallery size."""
    k = max(1, min(k, index.ntotal))
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, ids

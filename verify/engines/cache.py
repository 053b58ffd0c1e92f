"""On-disk caches of arrays (detections, embeddings) keyed by content hashes.

One cache file per key of what produced the arrays (model artifact, preprocessing, alignment),
so a change of any of them starts a new file and nothing stale is ever read. Entries are
stored as one flat array plus row counts (not one archive member per entry): a full-LFW
cache of ~10,000 entries loads in milliseconds.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from core.artifacts import write_bytes_atomic


class VectorCache:
    """`key -> array` (arrays of one trailing shape, any number of rows); saved atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path) as stored:
                keys, rows, flat = stored["keys"], stored["rows"], stored["values"]
            starts = np.concatenate([[0], np.cumsum(rows)])
            self.entries = {str(k): flat[a:b] for k, a, b in zip(keys, starts[:-1], starts[1:])}
        self.dirty = False

    def get(self, key: str) -> np.ndarray | None:
        return self.entries.get(key)

    def put(self, key: str, value: np.ndarray) -> None:
        self.entries[key] = value
        self.dirty = True

    def missing(self, keys: list[str]) -> list[str]:
        return [k for k in keys if k not in self.entries]

    def save(self) -> None:
        if not self.dirty or not self.entries:
            return
        keys = list(self.entries)
        values = [self.entries[k] for k in keys]
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(keys), rows=np.array([len(v) for v in values]),
                 values=np.concatenate(values))
        write_bytes_atomic(self.path, buffer.getvalue())
        self.dirty = False

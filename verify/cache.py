"""On-disk cache of vectors (embeddings, landmarks) keyed by content hashes, one .npz per model key."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from convert.artifacts import write_bytes_atomic


class VectorCache:
    """`key -> array` for one (model artifact, preprocessing) key; saved atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path) as stored:
                self.entries = {k: stored[k] for k in stored.files}
        self.dirty = False

    def get(self, key: str) -> np.ndarray | None:
        return self.entries.get(key)

    def put(self, key: str, value: np.ndarray) -> None:
        self.entries[key] = value
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            buffer = io.BytesIO()
            np.savez(buffer, **self.entries)
            write_bytes_atomic(self.path, buffer.getvalue())
            self.dirty = False

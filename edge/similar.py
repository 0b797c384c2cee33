"""'Find similar images': nearest VAE latents by brute force in numpy.

The matrix grows in place as records are analysed (read from the store since the last query),
so a query costs one pass over n x latent_dim floats: see `bench/search.py` for the timings up
to a million vectors. A re-analysed record's new latent replaces its row.
"""

from __future__ import annotations

import threading

import numpy as np

from edge.store import Store


class LatentNeighbours:
    def __init__(self, store: Store | None) -> None:
        """`store` None: vectors come only through `add` (benchmarks)."""
        self.store = store
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._matrix = np.zeros((0, 0), np.float32)
        self._n = 0
        self._last = 0
        self._lock = threading.RLock()

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        with self._lock:
            if self._matrix.shape[1] != vectors.shape[1]:
                self._matrix = np.zeros((max(1024, 2 * len(ids)), vectors.shape[1]), np.float32)
            new = [i for i, rid in enumerate(ids) if rid not in self._row]
            for i, rid in enumerate(ids):
                if rid in self._row:
                    self._matrix[self._row[rid]] = vectors[i]
            need = self._n + len(new)
            if need > len(self._matrix):
                grown = np.zeros((max(need, 2 * len(self._matrix)), vectors.shape[1]), np.float32)
                grown[: self._n] = self._matrix[: self._n]
                self._matrix = grown
            self._matrix[self._n : need] = vectors[new]
            for k, i in enumerate(new):
                self._row[ids[i]] = self._n + k
                self._ids.append(ids[i])
            self._n = need

    def refresh(self) -> None:
        if self.store is None:
            return
        with self._lock:  # one refresh at a time, or two would add the same rows
            last, ids, vecs = self.store.vectors("latent", after=self._last)
            if ids:
                self.add(ids, vecs)
                self._last = last

    def __len__(self) -> int:
        return self._n

    def query(self, rid: str, k: int) -> list[tuple[str, float]] | None:
        """The k nearest other images as (id, Euclidean distance); None if `rid` is unknown."""
        self.refresh()
        with self._lock:
            row = self._row.get(rid)
            if row is None:
                return None
            m = self._matrix[: self._n]
            d = ((m - m[row]) ** 2).sum(axis=1)
            d[row] = np.inf
            k = min(k, self._n - 1)
            if k <= 0:
                return []
            top = np.argpartition(d, k - 1)[:k]
            top = top[np.argsort(d[top])]
            return [(self._ids[i], float(np.sqrt(d[i]))) for i in top]

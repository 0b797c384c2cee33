"""Vector indexes over one blob of every record the running bundle analysed: the VAE latent
("similar images": an HNSW index, usearch) and the semantic profile (the first stage of
semantic ranking: an exact scan of one column per query word).

Why two kinds: HNSW finds a latent's neighbours with a recall@10 near 0.99 (`bench/search.py`
measures it at 1M records), but a query's profile (1 on each query word, 0 elsewhere) lies
far from every image's profile, and HNSW's graph walk then misses most of the true top 10
even searching very wide; summing a few columns of a float32 matrix is exact, and fast
enough.

An index is derived data, like the Tantivy index beside it: it follows the store by a cursor
(the store's `analysed_seq`), so a record analysed again replaces its vector, and after a
crash the saved index catches up from its saved cursor. It holds one bundle's vectors only
(another bundle's latent is another space): a new bundle starts a new index, which fills as
records are re-analysed. Keys are record seqs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.cxx_locale import init_system_locale
from edge.store.store import Store, held_if_free

log = logging.getLogger("s3e.vectors")
SAVE_EVERY_S = 60.0
"""A changed index is written at most this often (and at stop); a crash loses nothing: the
saved cursor says where to catch up from."""
CONNECTIVITY = 32
EXPANSION_ADD = 256
EXPANSION_SEARCH = 160
"""HNSW graph degree and breadths, chosen on 32-d Gaussian latents (the hardest case: no
structure) at 1M records: degree 16 needs a very wide search for a recall@10 of 0.98, degree
32 built at breadth 256 reaches it searching at 160, and a wider search costs CPU for little
more recall. `bench/search.py` measures recall and time at 1M."""


class Backend(Protocol):
    def __len__(self) -> int: ...
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...
    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]: ...
    def get(self, key: int) -> np.ndarray | None: ...
    def save(self, path: Path) -> None: ...


def _usearch() -> Any:
    """usearch, imported only after the system C++ locale is set up (see edge.cxx_locale)."""
    init_system_locale()
    import usearch.index

    return usearch.index


class Hnsw:
    """usearch's HNSW graph; `metric` "l2sq" or "ip"; distances as usearch gives them."""

    suffix = ".usearch"

    def __init__(self, ndim: int, metric: str, index: Any = None) -> None:
        self.index = index or _usearch().Index(
            ndim=ndim,
            metric=metric,
            dtype="f16",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )

    @classmethod
    def load(cls, path: Path, metric: str) -> Hnsw:
        """The saved graph; one of another degree is rebuilt. The breadths are not saved with
        it (a restored index would search at usearch's default, 64)."""
        index = _usearch().Index.restore(str(path))
        if index is None:
            raise ValueError(f"{path}: not a usearch index")
        if index.connectivity != CONNECTIVITY:
            raise ValueError(f"{path}: a graph of degree {index.connectivity}, not {CONNECTIVITY}")
        index.expansion_add, index.expansion_search = EXPANSION_ADD, EXPANSION_SEARCH
        return cls(index.ndim, metric, index)

    def __len__(self) -> int:
        return len(self.index)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        present = keys[np.array([int(k) in self.index for k in keys], bool)]
        if len(present):
            self.index.remove(present)
        self.index.add(keys, vectors.astype(np.float32), threads=2)

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        if not len(self.index):
            return []
        m = self.index.search(vector.astype(np.float32), min(k, len(self.index)))
        return [(int(key), float(d)) for key, d in zip(m.keys, m.distances, strict=True)]

    def get(self, key: int) -> np.ndarray | None:
        return np.asarray(self.index.get(key), np.float32) if key in self.index else None

    def save(self, path: Path) -> None:
        self.index.save(str(path))


class Columns:
    """Exact inner product for sparse queries of equal weights (a profile query: 1/k on each
    of k words): vectors as float32 columns, one row per dimension, so a query reads k rows
    and sums them, scaling only the top k rather than every row by its weight (a one-word
    query reads its row in place). Distance = 1 - product. float32, not float16: numpy's
    float16 conversion of a row would cost most of a search (48 words: 192 bytes an
    image)."""

    suffix = ".npz"

    def __init__(
        self,
        ndim: int,
        metric: str = "ip",
        keys: np.ndarray | None = None,
        matrix: np.ndarray | None = None,
    ) -> None:
        self.keys = keys if keys is not None else np.zeros(0, np.uint64)
        self.n = len(self.keys)
        self.matrix = np.zeros((ndim, max(1024, 2 * self.n)), np.float32)
        if matrix is not None:
            self.matrix[:, : self.n] = matrix
        self.keys = np.resize(self.keys, self.matrix.shape[1])
        self.row = {int(k): i for i, k in enumerate(self.keys[: self.n])}

    @classmethod
    def load(cls, path: Path, metric: str) -> Columns:
        with np.load(path) as f:
            return cls(f["matrix"].shape[0], metric, f["keys"], f["matrix"])

    def __len__(self) -> int:
        return self.n

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        for key, vec in zip(keys, vectors, strict=True):
            i = self.row.get(int(key))
            if i is None:
                if self.n == self.matrix.shape[1]:
                    self.matrix = np.concatenate([self.matrix, np.zeros_like(self.matrix)], 1)
                    self.keys = np.resize(self.keys, self.matrix.shape[1])
                i, self.n = self.n, self.n + 1
                self.row[int(key)], self.keys[i] = i, key
            self.matrix[:, i] = vec

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        dims = np.flatnonzero(vector)
        if not self.n or not len(dims):
            return []
        weight = vector[dims[0]]
        if np.any(vector[dims] != weight):
            raise ValueError("a columns index takes queries of equal non-zero weights")
        rows = self.matrix[:, : self.n]
        total = rows[dims[0]] if len(dims) == 1 else np.add(rows[dims[0]], rows[dims[1]])
        for d in dims[2:]:
            total += rows[d]
        top = top_k(total, min(k, self.n))
        return [(int(self.keys[i]), float(1 - weight * total[i])) for i in top]

    def get(self, key: int) -> np.ndarray | None:
        i = self.row.get(int(key))
        return None if i is None else self.matrix[:, i].copy()

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, keys=self.keys[: self.n], matrix=self.matrix[:, : self.n])


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, largest first. The k-th largest of a sample bounds
    the candidates first, several times faster than a partition of them all.
    Exact: every score at or over the bound is a candidate, and when k are, the k largest
    are among them."""
    n = len(scores)
    sample = scores[:: max(1, n // 10_000)]
    j = min(len(sample) - 1, 4 * k * len(sample) // n + 1)  # about 4k candidates expected
    bound = np.partition(sample, len(sample) - 1 - j)[len(sample) - 1 - j]
    candidates = np.flatnonzero(scores >= bound)
    if len(candidates) < k:
        candidates = np.arange(n)
    top = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
    return top[np.argsort(-scores[top], kind="stable")]


BACKENDS: dict[str, Any] = {"hnsw": Hnsw, "columns": Columns}


class VectorIndex:
    """One blob's vectors of the records one bundle analysed."""

    def __init__(
        self,
        store: Store | None,
        folder: Path,
        blob: str,
        metric: str,
        bundle: Callable[[], str] = lambda: "",
        kind: str = "hnsw",
    ) -> None:
        """`kind`: "hnsw" (metric "l2sq" or "ip") or "columns" (exact inner product of
        sparse queries); `bundle`: the version of the bundle analysing now; `store` None:
        vectors come only through `add` (benchmarks)."""
        self.store, self.folder, self.blob, self.metric = store, Path(folder), blob, metric
        self.kind = BACKENDS[kind]
        self.running = bundle
        self.bundle = ""
        self.cursor = 0
        self.index: Backend | None = None
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()
        self._dirty = False
        self._saved_at = time.monotonic()

    @property
    def path(self) -> Path:
        return self.folder / f"{self.blob}{self.kind.suffix}"

    @property
    def meta_path(self) -> Path:
        return self.folder / f"{self.blob}.json"

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else 0

    # -- life ----------------------------------------------------------------------------------
    def open(self) -> None:
        """Load the saved index if it is the running bundle's, else start empty (to catch
        up from the store)."""
        bundle = self.running()
        with self._lock:
            self.bundle, self.cursor, self.index = bundle, 0, None
            try:
                if not self.meta_path.exists():
                    return  # a new device: nothing saved yet
                meta = json.loads(self.meta_path.read_text())
                if meta.get("bundle") == bundle and self.path.exists():
                    index = self.kind.load(self.path, self.metric)
                    if len(index) == meta["count"]:
                        self.index, self.cursor = index, int(meta["cursor"])
            except (OSError, ValueError, KeyError, RuntimeError, EOFError) as e:
                log.warning(
                    "%s: the saved %s index is unreadable (%s); rebuilding it",
                    self.folder,
                    self.blob,
                    e,
                )
            if self.index is None:
                log.info("%s index: rebuilding from the store for %s", self.blob, bundle)

    def reset(self) -> None:
        """Forget every vector (reindex): the next refresh reads the store from the start."""
        with self._lock:
            self.index, self.cursor, self._dirty = None, 0, True

    def current(self) -> bool:
        """Whether `refresh` would read nothing: the running bundle's index, and no record
        analysed past the cursor."""
        with self._lock:
            if self.store is None:
                return True
            return self.running() == self.bundle and self.store.last_analysed() <= self.cursor

    def held_if_free(self) -> contextlib.AbstractContextManager[bool]:
        """The index's lock, held if no thread holds it now (`edge.store.store.held_if_free`)."""
        return held_if_free(self._lock)

    def refresh(self) -> int:
        """Read what the store analysed since the cursor; returns how many vectors came."""
        if self.store is None:
            return 0
        added = 0
        if not self._refreshing.acquire(blocking=False):
            return 0  # another thread is reading the store: searches go on meanwhile
        try:  # in batches: a catch-up at start can take a minute at 1M records
            while True:
                with self._lock:
                    if self.running() != self.bundle:
                        self.open()
                    last, seqs, blobs = self.store.vectors(self.blob, self.bundle, self.cursor)
                    if last == self.cursor:
                        break
                    if seqs:
                        vecs = np.stack([np.frombuffer(b, np.float32) for b in blobs])
                        self.add(np.array(seqs, np.uint64), vecs)
                        added += len(seqs)
                    self.cursor, self._dirty = last, True
        finally:
            self._refreshing.release()
        return added

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace vectors (the last of a key repeated in `keys` wins)."""
        with self._lock:
            keys, last = np.unique(keys[::-1], return_index=True)
            vectors = vectors[::-1][last]
            if self.index is None:
                self.index = self.kind(vectors.shape[1], self.metric)
            self.index.add(keys, vectors)
            self._dirty = True

    def save(self, force: bool = False) -> None:
        """Write the index, then its cursor (atomic renames; a crash between leaves an older
        cursor, and catching up again replaces the same vectors)."""
        with self._lock:
            if not self._dirty or (not force and time.monotonic() - self._saved_at < SAVE_EVERY_S):
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            count = len(self)
            if self.index is not None:
                tmp = self.path.with_suffix(".tmp")
                self.index.save(tmp)
                os.replace(tmp, self.path)
            elif self.path.exists():
                self.path.unlink()
            meta = {
                "bundle": self.bundle,
                "cursor": self.cursor,
                "count": count,
                "metric": self.metric,
            }
            tmp_meta = self.meta_path.with_suffix(".json.tmp")
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_meta, self.meta_path)
            self._dirty, self._saved_at = False, time.monotonic()

    # -- reading -------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(key, distance) of the k nearest, nearest first."""
        with self._lock:
            return self.index.search(vector, k) if self.index is not None else []

    def get(self, key: int) -> np.ndarray | None:
        with self._lock:
            return self.index.get(key) if self.index is not None else None

    def health(self) -> dict[str, Any]:
        return {"vectors": len(self), "cursor": self.cursor}

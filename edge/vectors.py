"""Approximate-nearest-neighbour indexes (usearch HNSW) over one blob of every record the
running bundle analysed: the VAE latent ("similar images") and the semantic profile (the first
stage of semantic ranking).

An index is derived data, like the Tantivy index beside it: it follows the store by a cursor
(the store's `analysed_seq`), so a record analysed again replaces its vector, and after a
crash the saved index catches up from its saved cursor. It holds one bundle's vectors only
(another bundle's latent is another space): a new bundle starts a new index, which fills as
records are re-analysed. Keys are record seqs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from usearch.index import Index

from edge.store import Store

log = logging.getLogger("s3e.vectors")
SAVE_EVERY_S = 60.0
"""A changed index is written at most this often (and at stop); a crash loses nothing: the
saved cursor says where to catch up from."""
EXPANSION_SEARCH = 128
"""HNSW search breadth: recall@10 >= 0.98 against brute force at 1M (`bench/search.py`)."""


class VectorIndex:
    """One blob's vectors of the records one bundle analysed."""

    def __init__(
        self, store: Store | None, folder: Path, blob: str, metric: str,
        bundle: Callable[[], str] = lambda: "",
    ) -> None:  # fmt: skip
        """`bundle`: the version of the bundle analysing now; `store` None: vectors come
        only through `add` (benchmarks)."""
        self.store, self.folder, self.blob, self.metric = store, Path(folder), blob, metric
        self.running = bundle
        self.bundle = ""
        self.cursor = 0
        self.index: Index | None = None
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()
        self._dirty = False
        self._saved_at = time.monotonic()

    @property
    def path(self) -> Path:
        return self.folder / f"{self.blob}.usearch"

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
                    index = Index.restore(str(self.path))
                    if index is not None and len(index) == meta["count"]:
                        self.index, self.cursor = index, int(meta["cursor"])
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                log.warning("%s: the saved %s index is unreadable (%s); rebuilding it",
                            self.folder, self.blob, e)  # fmt: skip
            if self.index is None:
                log.info("%s index: rebuilding from the store for %s", self.blob, bundle)

    def reset(self) -> None:
        """Forget every vector (reindex): the next refresh reads the store from the start."""
        with self._lock:
            self.index, self.cursor, self._dirty = None, 0, True

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
                self.index = Index(ndim=vectors.shape[1], metric=self.metric, dtype="f16",
                                   connectivity=16, expansion_add=128,
                                   expansion_search=EXPANSION_SEARCH)  # fmt: skip
            present = keys[np.array([int(k) in self.index for k in keys], bool)]
            if len(present):
                self.index.remove(present)
            self.index.add(keys, vectors.astype(np.float32), threads=2)
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
                self.index.save(str(tmp))
                os.replace(tmp, self.path)
            elif self.path.exists():
                self.path.unlink()
            meta = {"bundle": self.bundle, "cursor": self.cursor, "count": count,
                    "metric": self.metric}  # fmt: skip
            tmp_meta = self.meta_path.with_suffix(".json.tmp")
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_meta, self.meta_path)
            self._dirty, self._saved_at = False, time.monotonic()

    # -- reading -------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(key, distance) of the k nearest, nearest first."""
        with self._lock:
            if self.index is None or not len(self.index):
                return []
            m = self.index.search(vector.astype(np.float32), min(k, len(self.index)))
            return [(int(key), float(d)) for key, d in zip(m.keys, m.distances, strict=True)]

    def get(self, key: int) -> np.ndarray | None:
        with self._lock:
            if self.index is None or key not in self.index:
                return None
            return np.asarray(self.index.get(key), np.float32)

    def health(self) -> dict[str, Any]:
        return {"vectors": len(self), "cursor": self.cursor}

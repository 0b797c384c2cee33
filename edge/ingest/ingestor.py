"""Ingest: an image's bytes to a durable, pending record, several images side by side.

Hashing, decoding, preprocessing, the thumbnail and writing the files run in a small pool of
threads (`ingest.workers`; the heavy parts release the GIL); the store makes the files durable
and commits the rows in groups, so one slow fsync does not set the pace for every image.
"Accepted" means durable: `ingest` (an upload's 201) and a `submit`'s future (a folder
file's removal) complete only after the original is durable and its row committed. The
preprocessed arrays (one per running bundle) are kept in a small cache so the analyser does
not decode twice; after a restart, or for a re-analysis, it decodes the stored original
again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from edge.config import EdgeConfig
from edge.ingest.imaging import (
    DecodeBudget,
    DecodeBusyError,
    Decoded,
    ImageRejectedError,
    Preprocessing,
    decode,
    preprocess,
    thumbnail_jpeg,
)
from edge.metrics import Metrics
from edge.parts import Hooks
from edge.store.store import Store

log = logging.getLogger("s3e.ingest")


@dataclass
class Ingested:
    id: str
    new: bool


class IngestClosedError(RuntimeError):
    """The daemon is stopping and takes no new images."""


class OriginalUnavailableError(RuntimeError):
    """A stored original is not on this device now (evicted, and S3 unreachable)."""


Inputs = tuple[np.ndarray, ...]
"""An image's model input for each running bundle, in order."""


class _Prepared:
    """Model inputs of recently accepted images, bounded in bytes (a photos input is 600 KB,
    a chest one 16 KB): an image that falls out is decoded again when its turn comes."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self._items: OrderedDict[str, Inputs] = OrderedDict()
        self._lock = threading.Lock()
        self.max_bytes = max_bytes
        self._bytes = 0

    def put(self, rid: str, x: Inputs) -> None:
        with self._lock:
            old = self._items.pop(rid, None)
            self._bytes -= _nbytes(old) if old is not None else 0
            self._items[rid] = x
            self._bytes += _nbytes(x)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                self._bytes -= _nbytes(self._items.popitem(last=False)[1])

    def pop(self, rid: str) -> Inputs | None:
        with self._lock:
            x = self._items.pop(rid, None)
            self._bytes -= _nbytes(x) if x is not None else 0
            return x

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def _nbytes(x: Inputs) -> int:
    return sum(a.nbytes for a in x)


class Ingestor:
    """Accept an image's bytes: validate, store durably, queue for analysis."""

    def __init__(
        self,
        store: Store,
        specs: list[Preprocessing],
        cfg: EdgeConfig,
        metrics: Metrics,
        hooks: Hooks | None = None,
    ) -> None:
        """`specs`: how each running bundle wants its images, in order; `hooks.fetch_original`:
        how to get an evicted original back (cloud sync)."""
        self.store, self.cfg, self.metrics = store, cfg, metrics
        self.hooks = hooks or Hooks()
        self.prepared = _Prepared()
        self.accepted = threading.Event()
        self.closed = False
        lim = cfg.limits
        self.budget = DecodeBudget(lim.decode_budget_mb << 20, lim.decode_wait_s)
        self.pool = ThreadPoolExecutor(cfg.ingest.workers, thread_name_prefix="ingest")
        self.set_preprocessing(specs)

    def set_preprocessing(self, specs: list[Preprocessing]) -> None:
        """Preprocess for other bundles from now on (a swap); cached arrays were for the
        old."""
        self.specs = list(specs)
        self.target = max(self.cfg.limits.thumb_size, *(s.size for s in self.specs))
        self.prepared.clear()

    def decode(self, data: bytes) -> Decoded:
        """Decode within the limits and the memory budget (`DecodeBusyError` if it stays
        full); failures are `ImageRejectedError`s."""
        lim = self.cfg.limits
        return decode(
            data,
            lim.max_pixels,
            lim.max_side,
            self.target,
            self.budget,
            self.cfg.dicom.keep_identity,
        )

    def _convert(self, img: Decoded, thumb_size: int) -> tuple[Inputs, bytes]:
        """The model inputs and (if `thumb_size`) the thumbnail; failures here are refusals."""
        try:
            x = tuple(preprocess(img.image, s.model_dump()) for s in self.specs)
            thumb = thumbnail_jpeg(img.image, thumb_size) if thumb_size else b""
        except MemoryError:
            raise ImageRejectedError("too_large", "not enough memory to process it") from None
        except (ValueError, TypeError, OSError) as e:
            raise ImageRejectedError("unsupported", f"cannot convert the image ({e})") from None
        return x, thumb

    def submit(self, data: bytes, source: str, name: str = "") -> Future[Ingested]:
        """`ingest` in the pool; the future carries its result or its exception."""
        if self.closed:
            raise IngestClosedError("the daemon is stopping")
        return self.pool.submit(self.ingest, data, source, name)

    def ingest(
        self, data: bytes, source: str, name: str = "", captured_at: float | None = None
    ) -> Ingested:
        """The record id (sha256 of the bytes). Raises `ImageRejectedError` for bad input,
        `DecodeBusyError` when large images fill the decode budget, `OSError`/`sqlite3.Error`
        when the store cannot take it now, `IngestClosedError` when stopping."""
        if self.closed:
            raise IngestClosedError("the daemon is stopping")
        rid = hashlib.sha256(data).hexdigest()
        if self.store.has(rid):
            self.metrics.duplicates.inc()
            log.info("duplicate %s from %s %s: already stored", rid[:12], source, name)
            return Ingested(rid, False)
        t0 = time.perf_counter()
        img = self.decode(data)  # the caller counts a refusal
        t1 = time.perf_counter()
        x, thumb = self._convert(img, self.cfg.limits.thumb_size)
        t2 = time.perf_counter()
        timings = {"decode_ms": (t1 - t0) * 1e3, "preprocess_ms": (t2 - t1) * 1e3}
        self.prepared.put(rid, x)
        # Concurrent accepts of the same bytes are safe: INSERT OR IGNORE keeps one row, and
        # each writer renames its own temp file onto the same content.
        new = self.store.accept(
            rid,
            img.kept if img.kept is not None else data,
            ext=img.ext,
            width=img.width,
            height=img.height,
            thumb=thumb,
            source=source,
            source_name=name,
            captured_at=captured_at or time.time(),
            timings=timings,
            meta={"dicom": img.attributes} if img.format == "DICOM" else None,
        )
        timings["store_ms"] = (time.perf_counter() - t2) * 1e3
        self.metrics.observe_ms(timings)
        if new:
            self.metrics.accepted.labels(source).inc()
            log.info(
                "accepted %s from %s %s (%dx%d %s)",
                rid[:12],
                source,
                name,
                img.width,
                img.height,
                img.format,
            )
            self.accepted.set()
        else:
            self.metrics.duplicates.inc()
        return Ingested(rid, new)

    def load(self, rid: str, ext: str) -> Inputs:
        """The preprocessed arrays: from the cache, or decoded again from the stored original,
        fetched back from S3 when the local quota evicted it (`OriginalUnavailableError`
        when it cannot be now)."""
        x = self.prepared.pop(rid)
        if x is not None:
            return x
        path = self.store.original_path(rid, ext)
        if path.exists():
            data = path.read_bytes()
        else:
            rec = self.store.get(rid)
            fetch = self.hooks.fetch_original
            got = fetch(rec) if rec is not None and fetch is not None else None
            if got is None:
                raise OriginalUnavailableError(f"the original of {rid[:12]} is not here now")
            data = got
        while True:  # analysis waits out the decode budget (each try waits); an upload cannot
            try:
                return self._convert(self.decode(data), 0)[0]  # the thumbnail exists already
            except DecodeBusyError:
                continue

    def close(self) -> None:
        self.closed = True
        self.pool.shutdown(wait=True, cancel_futures=True)

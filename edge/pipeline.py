"""The daemon's data flow up to the store: ingest -> store -> analyse (sinks: `edge.sinks`).

Ingest (in the capture threads and HTTP handlers) decodes and validates the image, writes the
original and thumbnail, and commits a pending row; it keeps the preprocessed array in a small
cache so the analyser does not decode twice. The analysers run in child processes
(`edge.worker`), so while one runs the models on an image, the capture thread decodes the next
on the other core. The store stays the only queue: after a restart the analyser re-decodes what
the cache lost.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.bundle import Bundle
from edge.config import EdgeConfig
from edge.imaging import (
    DecodeBudget,
    DecodeBusyError,
    Decoded,
    ImageRejectedError,
    decode,
    preprocess,
    thumbnail_jpeg,
)
from edge.metrics import Metrics
from edge.store import Analysis, Store
from edge.worker import AnalysisError, WorkerDiedError

log = logging.getLogger("s3e.pipeline")


@dataclass
class Ingested:
    id: str
    new: bool


class _Prepared:
    """Preprocessed arrays of recently accepted images, bounded (arrays are small: 64x64xC)."""

    def __init__(self, capacity: int = 256) -> None:
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.capacity = capacity

    def put(self, rid: str, x: np.ndarray) -> None:
        with self._lock:
            self._items[rid] = x
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def pop(self, rid: str) -> np.ndarray | None:
        with self._lock:
            return self._items.pop(rid, None)


class IngestClosedError(RuntimeError):
    """The daemon is stopping and takes no new images."""


class Ingestor:
    """Accept an image's bytes: validate, store durably, queue for analysis."""

    def __init__(self, store: Store, bundle: Bundle, cfg: EdgeConfig, metrics: Metrics) -> None:
        self.store, self.bundle, self.cfg, self.metrics = store, bundle, cfg, metrics
        self.prepared = _Prepared()
        self.accepted = threading.Event()
        self.closed = False
        lim = cfg.limits
        self.budget = DecodeBudget(lim.decode_budget_mb << 20, lim.decode_wait_s)
        self.target = max(lim.thumb_size, int(bundle.doc["preprocessing"]["size"]))

    def decode(self, data: bytes) -> Decoded:
        """Decode within the limits and the memory budget (`DecodeBusyError` if it stays
        full); failures are `ImageRejectedError`s."""
        lim = self.cfg.limits
        return decode(data, lim.max_pixels, lim.max_side, self.target, self.budget)

    def _convert(self, img: Decoded, thumb_size: int) -> tuple[np.ndarray, bytes]:
        """The model input and (if `thumb_size`) the thumbnail; failures here are refusals."""
        try:
            x = preprocess(img.image, self.bundle.doc["preprocessing"])
            thumb = thumbnail_jpeg(img.image, thumb_size) if thumb_size else b""
        except MemoryError:
            raise ImageRejectedError("too_large", "not enough memory to process it") from None
        except (ValueError, TypeError, OSError) as e:
            raise ImageRejectedError("unsupported", f"cannot convert the image ({e})") from None
        return x, thumb

    def ingest(
        self, data: bytes, source: str, name: str = "", captured_at: float | None = None
    ) -> Ingested:
        """The record id (sha256 of the bytes). Raises `ImageRejectedError` for bad input,
        `OSError`/`sqlite3.Error` when the store cannot take it now, `IngestClosedError` when
        stopping."""
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
            rid, data, ext=img.ext, width=img.width, height=img.height, thumb=thumb,
            source=source, source_name=name, captured_at=captured_at or time.time(),
            timings=timings,
        )  # fmt: skip
        timings["store_ms"] = (time.perf_counter() - t2) * 1e3
        self.metrics.observe_ms(timings)
        if new:
            self.metrics.accepted.labels(source).inc()
            log.info("accepted %s from %s %s (%dx%d %s)", rid[:12], source, name,
                     img.width, img.height, img.format)  # fmt: skip
            self.accepted.set()
        else:
            self.metrics.duplicates.inc()
        return Ingested(rid, new)

    def load(self, rid: str, ext: str) -> np.ndarray:
        """The preprocessed array: from the cache, or decoded again from the stored original."""
        x = self.prepared.pop(rid)
        if x is not None:
            return x
        data = self.store.original_path(rid, ext).read_bytes()
        while True:  # analysis can wait for the decode budget; an upload cannot
            try:
                return self._convert(self.decode(data), 0)[0]  # the thumbnail exists already
            except DecodeBusyError:
                continue


class AnalyserLike(Protocol):
    """`Analyser`, or `AnalyserProcess` which runs one in a child process."""

    bundle: Bundle

    def analyse(self, x: np.ndarray) -> tuple[Analysis, bytes]: ...


class AnalysisPool:
    """A dispatcher that reads pending rows from the store, and worker threads that each drive
    one analyser. `on_analysed` wakes the sinks."""

    def __init__(
        self,
        ingestor: Ingestor,
        analysers: Sequence[AnalyserLike],
        metrics: Metrics,
        on_analysed: Callable[[], None],
    ) -> None:
        self.ingestor, self.store = ingestor, ingestor.store
        self.analysers, self.metrics, self.on_analysed = analysers, metrics, on_analysed
        self._queue: queue.Queue[tuple[int, str, str]] = queue.Queue(maxsize=2 * len(analysers))
        self._stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.bundle_version = analysers[0].bundle.version

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._dispatch, name="dispatch", daemon=True)]
        self.threads += [
            threading.Thread(target=self._work, args=(a,), name=f"analyse-{i}", daemon=True)
            for i, a in enumerate(self.analysers)
        ]
        for t in self.threads:
            t.start()

    def stop(self, timeout: float) -> None:
        """Finish the images being analysed (bounded); what is still pending stays pending."""
        self._stop.set()
        self.ingestor.accepted.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _dispatch(self) -> None:
        last = 0
        while not self._stop.is_set():
            try:
                rows = self.store.pending(limit=32, after_seq=last)
            except sqlite3.Error as e:
                self.metrics.errors.labels("store").inc()
                log.error("cannot read pending images: %s; retrying in 1s", e)
                self._stop.wait(1.0)
                continue
            if not rows:
                self.ingestor.accepted.wait(0.5)
                self.ingestor.accepted.clear()
                continue
            for row in rows:
                while not self._stop.is_set():
                    try:
                        self._queue.put(row, timeout=0.5)
                        last = row[0]
                        break
                    except queue.Full:
                        continue

    def _work(self, analyser: AnalyserLike) -> None:
        while not self._stop.is_set():
            try:
                _, rid, ext = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._analyse(analyser, rid, ext)
            except Exception:  # the thread must live on; the row stays pending for a restart
                self.metrics.errors.labels("internal").inc()
                log.exception("analysis worker error on %s", rid[:12])

    def _analyse(self, analyser: AnalyserLike, rid: str, ext: str) -> None:
        """Analyse and save one image. A crash of the analysis process is retried once with a
        fresh one; a second crash, or an error the models raise, marks the image failed. A
        store that cannot write (a full disk) is retried until it can, or until stop: the
        image then stays pending."""
        for attempt in (1, 2):
            try:
                x = self.ingestor.load(rid, ext)
                analysis, mask = analyser.analyse(x)
                break
            except WorkerDiedError as e:
                if self._stop.is_set():
                    return
                self.metrics.errors.labels("analysis_crash").inc()
                log.error("analysis of %s: %s (attempt %d of 2)", rid[:12], e, attempt)
                if attempt == 2:
                    self.store.mark_failed(rid, str(e))
                    return
            except (AnalysisError, ImageRejectedError, OSError) as e:
                self.metrics.errors.labels("analysis").inc()
                log.error("analysis of %s failed: %s", rid[:12], e)
                self.store.mark_failed(rid, str(e))
                return
        while True:
            try:
                self.store.save_analysis(
                    rid, analysis, self.bundle_version, analyser.bundle.precision, mask
                )
                break
            except (OSError, sqlite3.Error) as e:
                self.metrics.errors.labels("store").inc()
                log.error("cannot save the analysis of %s: %s; retrying in 5s", rid[:12], e)
                if self._stop.wait(5.0):
                    return
        self.metrics.processed.inc()
        self.metrics.observe_ms(analysis.timings)
        log.info("analysed %s: %r labels=%s anomaly=%.2f (%.0f ms)", rid[:12], analysis.caption,
                 ",".join(lab["name"] for lab in analysis.labels), analysis.anomaly,
                 sum(analysis.timings.values()))  # fmt: skip
        self.on_analysed()

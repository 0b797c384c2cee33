"""The daemon's data flow: ingest -> store -> analyse -> sinks, each stage its own thread(s).

Ingest (in the capture threads and HTTP handlers) decodes and validates the image, writes the
original and thumbnail, and commits a pending row; it keeps the preprocessed array in a small
cache so the analyser does not decode twice. So while an analyser thread runs the models on one
image (the interpreters release the GIL), the capture thread decodes the next: both cores work.
The store stays the only queue: after a restart the analyser re-decodes what the cache lost.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.bundle import Bundle
from edge.config import EdgeConfig
from edge.imaging import ImageRejectedError, decode, preprocess, thumbnail_jpeg
from edge.metrics import Metrics
from edge.store import Analysis, Record, Store

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


class Ingestor:
    """Accept an image's bytes: validate, store durably, queue for analysis."""

    def __init__(self, store: Store, bundle: Bundle, cfg: EdgeConfig, metrics: Metrics) -> None:
        self.store, self.bundle, self.cfg, self.metrics = store, bundle, cfg, metrics
        self.prepared = _Prepared()
        self.accepted = threading.Event()
        self._lock = threading.Lock()

    def ingest(
        self, data: bytes, source: str, name: str = "", captured_at: float | None = None
    ) -> Ingested:
        """The record id (sha256 of the bytes); raises `ImageRejectedError` for bad input."""
        rid = hashlib.sha256(data).hexdigest()
        if self.store.has(rid):
            self.metrics.duplicates.inc()
            log.info("duplicate %s from %s %s: already stored", rid[:12], source, name)
            return Ingested(rid, False)
        t0 = time.perf_counter()
        try:
            img = decode(data, self.cfg.limits.max_pixels)
        except ImageRejectedError as e:
            self.metrics.errors.labels(e.kind).inc()
            raise
        t1 = time.perf_counter()
        x = preprocess(img.image, self.bundle.doc["preprocessing"])
        thumb = thumbnail_jpeg(img.image, self.cfg.limits.thumb_size)
        t2 = time.perf_counter()
        self.prepared.put(rid, x)
        timings = {
            "decode_ms": round((t1 - t0) * 1e3, 3),
            "preprocess_ms": round((t2 - t1) * 1e3, 3),
        }
        with self._lock:  # two sources racing on the same bytes store them once
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
        return preprocess(decode(data, self.cfg.limits.max_pixels).image,
                          self.bundle.doc["preprocessing"])  # fmt: skip


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
        self._threads: list[threading.Thread] = []
        self.in_flight = 0
        self._lock = threading.Lock()
        self.bundle_version = analysers[0].bundle.version

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._dispatch, name="dispatch", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, args=(a,), name=f"analyse-{i}", daemon=True)
            for i, a in enumerate(self.analysers)
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float) -> None:
        """Finish the images being analysed (bounded); what is still pending stays pending."""
        self._stop.set()
        self.ingestor.accepted.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    @property
    def depth(self) -> int:
        return self._queue.qsize() + self.in_flight

    def _dispatch(self) -> None:
        last = 0
        while not self._stop.is_set():
            rows = self.store.pending(limit=32, after_seq=last)
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
            with self._lock:
                self.in_flight += 1
            try:
                self._analyse(analyser, rid, ext)
            finally:
                with self._lock:
                    self.in_flight -= 1

    def _analyse(self, analyser: AnalyserLike, rid: str, ext: str) -> None:
        try:
            x = self.ingestor.load(rid, ext)
            analysis, mask = analyser.analyse(x)
            self.store.save_analysis(
                rid, analysis, self.bundle_version, analyser.bundle.precision, mask
            )
        except Exception as e:  # a model failure must not stop the daemon; the row keeps why
            self.metrics.errors.labels("analysis").inc()
            log.error("analysis of %s failed: %s: %s", rid[:12], type(e).__name__, e)
            self.store.mark_failed(rid, f"{type(e).__name__}: {e}")
            return
        self.metrics.processed.inc()
        self.metrics.observe_ms(analysis.timings)
        log.info("analysed %s: %r labels=%s anomaly=%.2f (%.0f ms)", rid[:12], analysis.caption,
                 ",".join(lab["name"] for lab in analysis.labels), analysis.anomaly,
                 sum(analysis.timings.values()))  # fmt: skip
        self.on_analysed()


class Sink(Protocol):
    """A consumer of analysed records (the index now; MQTT and S3 plug in the same way).

    `name` is its column in the store. `deliver` returns the ids it has made durable at its end;
    only those are marked, so anything else is offered again later."""

    name: str

    def deliver(self, records: list[Record]) -> list[str]: ...


class SinkWorker:
    """Feeds one sink from the store: wakes on new records or every `interval` seconds, takes up
    to `batch` due records at a time, marks what the sink confirms."""

    def __init__(
        self, store: Store, sink: Sink, batch: int, interval: float, metrics: Metrics
    ) -> None:
        self.store, self.sink, self.batch, self.interval = store, sink, batch, interval
        self.metrics = metrics
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._pending_wakes = 0
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """One more record is due; wake at once when a whole batch is waiting."""
        self._pending_wakes += 1
        if self._pending_wakes >= self.batch:
            self.wake.set()

    def stop(self, timeout: float) -> None:
        """Deliver what is due one last time (bounded), then stop."""
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout)

    def drain(self) -> int:
        """Deliver everything due now; the number of records delivered."""
        total = 0
        while True:
            records = self.store.due(self.sink.name, self.batch)
            if not records:
                return total
            try:
                done = self.sink.deliver(records)
            except Exception as e:  # the sink's outage must not lose records: they stay due
                self.metrics.errors.labels(f"sink_{self.sink.name}").inc()
                log.error("sink %s failed on %d records: %s: %s", self.sink.name, len(records),
                          type(e).__name__, e)  # fmt: skip
                return total
            if done:
                self.store.mark_done(self.sink.name, done)
            total += len(done)
            if len(done) < len(records):
                return total

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            self._pending_wakes = 0
            self.drain()
            if stopping:
                return
            self.wake.wait(self.interval)
            self.wake.clear()

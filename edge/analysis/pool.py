"""The analysis part: a dispatcher over the store and one worker thread per analyser process;
re-analysis with a newer bundle, and swapping bundles without a restart.

Fresh images come first. When none waits, records analysed by another bundle than the current
one are re-analysed, by at most `reanalysis.share` of the workers. The store is the only
state: a record's `bundle` says what analysed it, so a kill -9 mid re-analysis resumes at the
next start with what is left, and no record is analysed twice by the same bundle.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from edge.analysis.bundle import Bundle
from edge.analysis.worker import AnalysisError, WorkerDiedError
from edge.ingest.imaging import ImageRejectedError
from edge.ingest.ingestor import Ingestor, Inputs, OriginalUnavailableError
from edge.metrics import Metrics
from edge.parts import BasePart
from edge.store.records import Analysis
from edge.store.store import ROUTE_SEP, Store

log = logging.getLogger("s3e.analysis")
REANALYSIS_KEY = "reanalysis"
RETRY_UNAVAILABLE_S = 15.0
"""An evicted original S3 cannot give back now is tried again this much later."""


class AnalyserLike(Protocol):
    """`AnalyserProcess`: a `Router` over the running bundles in a child process, fed ahead
    (`send`, `receive`)."""

    bundle: Bundle
    bundles: list[Bundle]
    placement: dict[str, str]
    fallback_reason: str
    runtime: str

    def analyse(self, x: Inputs) -> Analysis: ...

    def send(self, x: Inputs) -> None: ...

    def receive(self) -> Analysis: ...

    def close(self) -> None: ...


class SwapInProgressError(RuntimeError):
    """Another bundle swap has not finished."""


class Item(NamedTuple):
    """An image to analyse."""

    seq: int
    id: str
    ext: str
    again: bool
    """A re-analysis of a record an older bundle analysed."""


Flight = deque[tuple[Item, Inputs]]
"""Images sent to one analysis process, oldest first, with their model inputs."""
AHEAD = 2
"""Images sent to one analysis process before its oldest result is read: while the parent
saves one analysis, the child already works on the next."""


class AnalysisPool(BasePart):
    name = "analysis"

    def __init__(
        self,
        store: Store,
        ingestor: Ingestor,
        analysers: Sequence[AnalyserLike],
        metrics: Metrics,
        on_analysed: Callable[[], None],
        share: float,
        older_than: str | None = None,
        on_caught_up: Callable[[], None] = lambda: None,
    ) -> None:
        """`older_than`: re-analyse only records of bundles created before this ISO time;
        `on_caught_up`: called when the last image in hand is done and none is queued."""
        self.store, self.ingestor, self.metrics = store, ingestor, metrics
        self.analysers = list(analysers)
        self.on_analysed, self.on_caught_up = on_analysed, on_caught_up
        self.reanalysers = max(1, round(share * len(analysers))) if share > 0 else 0
        self.older_than = older_than
        self._by_version: dict[str, Bundle] = {}
        self._running(analysers[0].bundles)
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=2 * len(analysers))
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0
        self._in_flight: set[str] = set()
        self._reanalysing = 0
        self._unavailable: dict[str, float] = {}
        self._swap_lock = threading.Lock()
        self._progress_cache: tuple[float, dict[str, Any]] = (0.0, {})
        self._threads: list[threading.Thread] = []
        self._polls = 0
        self._begin_reanalysis()

    @property
    def threads(self) -> list[threading.Thread]:
        return self._threads

    @property
    def polls(self) -> int:
        """Reads of the store for images to analyse (fresh, or stale for a re-analysis) so
        far. Two more reads mean the store was read after any given moment, so an image
        pending then has been handed to the analysers, and none analysed means none was
        pending."""
        return self._polls

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._dispatch, name="dispatch", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, args=(i,), name=f"analyse-{i}", daemon=True)
            for i in range(len(self.analysers))
        ]
        for t in self._threads:
            t.start()

    def stop(self, deadline: float) -> None:
        """Finish the images being analysed (bounded); what is pending stays pending."""
        self._stop.set()
        self.ingestor.accepted.set()
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for a in self.analysers:
            a.close()

    # -- dispatch ----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        last_fresh = last_stale = 0
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(0.05)
                continue
            try:
                fresh = self.store.pending(limit=32, after_seq=last_fresh)
                stale = [] if fresh or not self.reanalysers else self._stale(last_stale)
            except sqlite3.Error as e:
                self.metrics.errors.labels("store").inc()
                log.error("cannot read the images to analyse: %s; retrying in 1s", e)
                self._stop.wait(1.0)
                continue
            self._polls += 1
            if not fresh and not stale:
                last_stale = 0  # from the start again: skipped records may be ready now
                self.ingestor.accepted.wait(0.5)
                self.ingestor.accepted.clear()
                continue
            for seq, rid, ext in fresh:
                if self._put(Item(seq, rid, ext, False)):
                    last_fresh = seq
            for seq, rid, ext in stale[:1]:  # one at a time: fresh images may come meanwhile
                last_stale = seq
                if rid in self._in_flight or self._unavailable.get(rid, 0) > time.monotonic():
                    continue
                while self._reanalysing >= self.reanalysers * AHEAD and not self._stop.is_set():
                    with self._idle:
                        self._idle.wait(0.2)
                self._put(Item(seq, rid, ext, True))

    def _stale(self, after: int) -> list[tuple[int, str, str]]:
        return self.store.stale(self.version, limit=8, after_seq=after, older_than=self.older_than)

    def _put(self, item: Item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                with self._idle:
                    self._in_flight.add(item.id)
                    self._reanalysing += item.again
                return True
            except queue.Full:
                continue
        return False

    # -- work --------------------------------------------------------------------------------
    def _work(self, i: int) -> None:
        """Keep up to `AHEAD` images in analyser `i`; save each analysis as it comes back.
        Stopping or pausing (a swap) takes no new image and finishes those in flight."""
        flight: Flight = deque()
        analyser = self.analysers[i]
        while flight or not self._stop.is_set():
            item = None
            if len(flight) < AHEAD and not self._stop.is_set():
                item = self._take(block=not flight)
            if item is not None:
                if not flight:
                    analyser = self.analysers[i]  # a swap may have replaced it
                self._send(analyser, item, flight)
            elif flight:
                self._receive(analyser, flight)

    def _send(self, analyser: AnalyserLike, item: Item, flight: Flight) -> None:
        x = self._load(item)
        if x is None:
            return
        flight.append((item, x))
        try:
            analyser.send(x)
        except WorkerDiedError:
            self._recover(analyser, flight)

    def _take(self, block: bool) -> Item | None:
        if not block and self._paused.is_set():
            return None
        try:
            item = self._queue.get(timeout=0.5) if block else self._queue.get_nowait()
        except queue.Empty:
            return None
        with self._idle:
            self._busy += 1
        return item

    def _done(self, item: Item) -> None:
        with self._idle:
            self._busy -= 1
            self._in_flight.discard(item.id)
            self._reanalysing -= item.again
            self._idle.notify_all()
            caught_up = not self._busy and self._queue.empty()
        if caught_up:
            self.on_caught_up()

    def _load(self, item: Item) -> Inputs | None:
        """The image's model inputs, or None (the item is then done) when they cannot be
        had."""
        try:
            return self.ingestor.load(item.id, item.ext)
        except OriginalUnavailableError as e:
            self._unavailable[item.id] = time.monotonic() + RETRY_UNAVAILABLE_S
            log.warning("re-analysis of %s waits: %s", item.id[:12], e)
            self._done(item)
        except (ImageRejectedError, OSError) as e:
            self._finish(item, self._fail, item, e)
        except Exception:
            self._finish(item, log.exception, "cannot load %s", item.id[:12])
        return None

    def _receive(self, analyser: AnalyserLike, flight: Flight) -> None:
        item, _ = flight[0]
        try:
            analysis = analyser.receive()
        except WorkerDiedError:
            self._recover(analyser, flight)
            return
        except AnalysisError as e:
            flight.popleft()
            self._finish(item, self._fail, item, e)
            return
        flight.popleft()
        self._finish(item, self._save, item, analysis)

    def _recover(self, analyser: AnalyserLike, flight: Flight) -> None:
        """The process died with images in it (a fresh one runs now): the oldest was the one
        being analysed and has one more try; the others never started and have two."""
        self.metrics.errors.labels("analysis_crash").inc()
        head = True
        while flight:
            item, x = flight.popleft()
            log.error(
                "analysis of %s: the analysis process died%s",
                item.id[:12],
                " (attempt 1 of 2)" if head else "; analysing it again",
            )
            self._finish(item, self._analyse, analyser, item, x, 1 if head else 2)
            head = False

    def _finish(self, item: Item, work: Callable[..., None], *args: Any) -> None:
        """`work(*args)` for the item, which is then done whatever happens."""
        try:
            work(*args)
        except Exception:  # the thread must live on; the row stays as it was
            self.metrics.errors.labels("internal").inc()
            log.exception("analysis worker error on %s", item.id[:12])
        finally:
            self._done(item)

    def _fail(self, item: Item, e: Exception) -> None:
        """The image failed with the running bundles, which do not try it again."""
        self.metrics.errors.labels("analysis").inc()
        log.error("analysis of %s failed: %s", item.id[:12], e)
        self.store.mark_failed(item.id, str(e), self.version)

    def _analyse(self, analyser: AnalyserLike, item: Item, x: Inputs, tries: int) -> None:
        """Analyse one image alone and save it. A crash of the analysis process is retried
        with a fresh one while `tries` last; the last crash, or an error the models raise,
        marks the image failed (with the running bundles)."""
        rid = item.id
        for attempt in range(1, tries + 1):
            try:
                analysis = analyser.analyse(x)
                break
            except WorkerDiedError as e:
                if self._stop.is_set():
                    return
                self.metrics.errors.labels("analysis_crash").inc()
                log.error("analysis of %s: %s (try %d of %d)", rid[:12], e, attempt, tries)
                if attempt == tries:
                    self.store.mark_failed(rid, str(e), self.version)
                    return
            except (AnalysisError, ImageRejectedError, OSError) as e:
                self._fail(item, e)
                return
        self._save(item, analysis)

    def _save(self, item: Item, analysis: Analysis) -> None:
        """A store that cannot write (a full disk) is retried until it can, or until stop:
        the image then stays as it was."""
        _, rid, _, again = item
        bundle = self._by_version.get(analysis.bundle, self.bundle)
        while True:
            try:
                rev = self.store.save_analysis(rid, analysis, bundle.version, bundle.precision)
                break
            except (OSError, sqlite3.Error) as e:
                self.metrics.errors.labels("store").inc()
                log.error("cannot save the analysis of %s: %s; retrying in 5s", rid[:12], e)
                if self._stop.wait(5.0):
                    return
        self._unavailable.pop(rid, None)
        self.metrics.processed.inc()
        self.metrics.reanalysed.inc(again)
        self.metrics.observe_ms(analysis.timings)
        log.info(
            "%s %s (revision %d, %s, %.0f ms)",
            "re-analysed" if again else "analysed",
            rid[:12],
            rev,
            bundle.name,
            sum(analysis.timings.values()),
        )
        self.on_analysed()

    # -- bundles -----------------------------------------------------------------------------
    def _running(self, bundles: list[Bundle]) -> None:
        """Run `bundles` from now on: the first analyses every image, the next what it
        calls out of its domain. `version` names the set (a single bundle's version)."""
        self.bundles, self.bundle = list(bundles), bundles[0]
        self.version = ROUTE_SEP.join(b.version for b in bundles)
        self._by_version.update({b.version: b for b in bundles})  # a late analysis too
        for b in bundles:
            self.store.note_bundle(b.version, b.name, b.doc.created)

    def _begin_reanalysis(self) -> None:
        """Note the target and how many records it starts with, for the progress report."""
        self._progress_cache = (0.0, {})  # a swap's progress starts now, not 2 s later
        state = self.store.get_meta(REANALYSIS_KEY) or {}
        if state.get("bundle") != self.version:
            total = self.store.count_stale(self.version, self.older_than)
            state = {"bundle": self.version, "started_at": time.time(), "total": total}
            self.store.set_meta(REANALYSIS_KEY, state)
            if total:
                log.info(
                    "%d records were analysed by another bundle: re-analysing them with "
                    "%s in the background",
                    total,
                    self.version,
                )

    def swap(self, analysers: Sequence[AnalyserLike], deadline_s: float = 60.0) -> None:
        """Replace the analysers (a new bundle, verified by the caller): the dispatcher pauses,
        the images in flight finish, then new captures go to the new bundle and older records
        are re-analysed in the background. Raises SwapInProgressError if one is running."""
        if not self._swap_lock.acquire(blocking=False):
            raise SwapInProgressError("a bundle swap is in progress")
        try:
            self._paused.set()
            deadline = time.monotonic() + deadline_s
            with self._idle:
                while (self._busy or self._in_flight) and time.monotonic() < deadline:
                    self._drain_queue()
                    self._idle.wait(0.2)
            old, self.analysers = self.analysers, list(analysers)
            self._running(analysers[0].bundles)
            self.ingestor.set_preprocessing([b.doc.preprocessing for b in self.bundles])
            self._unavailable.clear()
            self._begin_reanalysis()
            self._paused.clear()
            for a in old:
                a.close()
        finally:
            self._swap_lock.release()

    def _drain_queue(self) -> None:
        """Items queued but not started go back to the store's order (they stay due)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._in_flight.discard(item.id)
            self._reanalysing -= item.again

    @property
    def swapping(self) -> bool:
        return self._swap_lock.locked()

    @property
    def waiting(self) -> int:
        """Records whose evicted original S3 could not give back yet."""
        return len(self._unavailable)

    def progress(self) -> dict[str, Any]:
        """Re-analysis: done / total, rate, ETA (computed at most every 2 s)."""
        at, cached = self._progress_cache
        if cached and time.monotonic() - at < 2.0:
            return cached
        state = self.store.get_meta(REANALYSIS_KEY) or {}
        left = self.store.count_stale(self.version, self.older_than)
        total = max(int(state.get("total", 0)), left)
        done = total - left
        elapsed = max(time.time() - float(state.get("started_at", time.time())), 1e-6)
        rate = done / elapsed if done else 0.0
        out = {
            "bundle": self.version,
            "total": total,
            "done": done,
            "left": left,
            "rate_per_s": round(rate, 2),
            "eta_s": round(left / rate, 1) if rate and left else (0.0 if not left else None),
            "share": self.reanalysers / max(len(self.analysers), 1),
        }
        self._progress_cache = (time.monotonic(), out)
        return out

    def health(self) -> dict[str, Any]:
        first = self.analysers[0]
        described = [
            {
                "name": b.name,
                "version": b.version,
                "precision": b.precision,
                "domain": b.doc.domain,
                "outputs": sorted(b.doc.outputs),
            }
            for b in self.bundles
        ]
        return {
            "bundle": described[0],
            "catch_all": described[1] if len(described) > 1 else None,
            "runtime": first.runtime,
            "placement": dict(first.placement),
            "fallback_reason": first.fallback_reason or None,
            "reanalysis": self.progress(),
            "swapping": self.swapping,
        }

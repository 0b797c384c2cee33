"""A sink's worker: feeds one sink (the index, MQTT, S3) the records it owes, from the store.
Sinks never call each other.

A sink registers its name with the store, which then keeps a `due` row for every record it
owes, at the record's revision (a re-analysis makes a record due again everywhere). A
`SinkWorker` offers it the due records in capture order and marks only what the sink confirms,
so an outage, a crash or a kill -9 leaves the rest due. One record a sink cannot take is set
aside (logged, counted) so it cannot hold up those behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from edge.metrics import Metrics
from edge.store.records import Record
from edge.store.store import Store

log = logging.getLogger("s3e.sinks")


class RecordsRefusedError(Exception):
    """Raised by a sink that delivered `done` but cannot take the records in `refused` (id ->
    reason), while the sink itself works: those are set aside, the rest go on."""

    def __init__(self, done: list[str], refused: dict[str, str]) -> None:
        super().__init__(f"{len(refused)} records refused")
        self.done, self.refused = done, refused


class Sink(Protocol):
    """`name` is the sink's name in the store. `deliver` returns the ids now durable at the
    sink's end; `reset` forgets everything delivered, before every record is offered again."""

    name: str

    def deliver(self, records: list[Record]) -> list[str]: ...

    def reset(self) -> None: ...


class SinkWorker:
    """Feeds one sink from the store: wakes when a batch is waiting or every `interval`
    seconds, takes up to `batch` due records at a time, marks what the sink confirms."""

    def __init__(
        self,
        store: Store,
        sink: Sink,
        batch: int,
        interval: float,
        metrics: Metrics,
        wake_after: int | None = None,
        on_marked: Callable[[list[str]], None] | None = None,
    ) -> None:
        """`wake_after`: new records that wake the worker at once (default: a whole batch;
        1 for a sink whose latency matters more than its batching). `on_marked(ids)`: what
        follows once records are marked done in the store (the S3 quota)."""
        self.store, self.sink, self.batch, self.interval = store, sink, batch, interval
        self.wake_after = wake_after or batch
        self.metrics = metrics
        self.on_marked = on_marked
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._reset = threading.Event()
        self.resets = 0
        """Resets done (a reindex): what a caller waits on to know its request was taken."""
        self._rounds = 0
        self._waiting = 0
        self._flush = False
        self._drained_at = 0.0
        self._lock = threading.Lock()
        self._set_aside: set[str] = set()
        self._deadline: float | None = None
        self.thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)
        n = store.register_sink(sink.name)
        if n:
            log.info("sink %s is new: %d records to deliver", sink.name, n)

    def start(self) -> None:
        self.thread.start()

    @property
    def rounds(self) -> int:
        """Rounds done so far, each draining what is due until nothing is left or the sink
        takes nothing (it is down). Two more rounds mean a whole round began after any given
        moment: a record due then and still due was offered and not taken, and one not
        delivered was not due."""
        return self._rounds

    @property
    def set_aside(self) -> int:
        """Records this sink could not take, kept out of its way until restart."""
        return len(self._set_aside)

    def notify(self) -> None:
        """One more record is due; wake at once when `wake_after` are waiting."""
        with self._lock:
            self._waiting += 1
            if self._waiting >= self.wake_after:
                self.wake.set()

    def flush(self) -> None:
        """The analysis has caught up: deliver what waits now instead of at the interval, so
        the last images of a burst are not held back, but at most every tenth of the
        interval, so a trickle of images does not cost a delivery (an index commit) each."""
        with self._lock:
            if self._waiting:
                self._flush = True
                self.wake.set()

    def request_reset(self) -> None:
        """Have the sink forget everything and take every record again (a reindex). Done in
        the worker's own thread, so it never interleaves with a delivery."""
        self._reset.set()
        self.wake.set()

    @property
    def stopped_event(self) -> threading.Event:
        return self._stop

    def stop(self, timeout: float) -> None:
        """Deliver what is due one last time (bounded), then stop."""
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self.wake.set()
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def drain(self) -> int:
        """Deliver everything due now; the number of records delivered."""
        total = 0
        while self._deadline is None or time.monotonic() < self._deadline:
            due = self.store.due(self.sink.name, self.batch + len(self._set_aside))
            records = [r for r in due if r.id not in self._set_aside][: self.batch]
            if not records:
                return total
            done = self._deliver(records)
            if not done:
                return total  # the sink is down: try again at the next wake
            revisions = {r.id: (r.seq, r.revision) for r in records}
            self.store.mark_done(self.sink.name, [revisions[i] for i in done])
            if self.on_marked is not None:
                self.on_marked(done)
            total += len(done)
        return total  # stopping, out of time: the rest stays due

    def _deliver(self, records: list[Record]) -> list[str]:
        try:
            return self.sink.deliver(records)
        except RecordsRefusedError as e:
            self.metrics.errors.labels(f"sink_{self.sink.name}").inc(len(e.refused))
            for rid, why in e.refused.items():
                log.error(
                    "sink %s cannot take %s (set aside until restart): %s",
                    self.sink.name,
                    rid[:12],
                    why,
                )
                self._set_aside.add(rid)
            return e.done
        except Exception as e:
            self.metrics.errors.labels(f"sink_{self.sink.name}").inc()
            log.error(
                "sink %s failed on %d records: %s: %s",
                self.sink.name,
                len(records),
                type(e).__name__,
                e,
            )
            if len(records) == 1:
                return []
        done: list[str] = []  # one by one: a record at fault, or the whole sink down?
        failed: list[tuple[Record, Exception]] = []
        for r in records:
            try:
                done += self.sink.deliver([r])
            except Exception as e:
                failed.append((r, e))
        if done:  # others went through, so these records are at fault
            for r, err in failed:
                log.error(
                    "sink %s cannot take %s (set aside until restart): %s",
                    self.sink.name,
                    r.id[:12],
                    err,
                )
                self._set_aside.add(r.id)
        return done

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            with self._lock:
                self._waiting = 0
            try:
                if self._reset.is_set():
                    self._reset.clear()
                    self.sink.reset()
                    n = self.store.reset_sink(self.sink.name)
                    self._set_aside.clear()
                    log.info("sink %s reset: %d records to deliver again", self.sink.name, n)
                    self.resets += 1
                self.drain()
            except Exception:  # the store itself failing: keep the thread, retry later
                self.metrics.errors.labels("internal").inc()
                log.exception("sink %s worker error", self.sink.name)
            self._drained_at = time.monotonic()
            self._rounds += 1
            if stopping:
                return
            self.wake.wait(self.interval)
            self.wake.clear()
            if self._flush:
                self._flush = False
                self._stop.wait(self._drained_at + self.interval / 10 - time.monotonic())

"""A sink's worker over a real store: what a sink confirms is marked done, a record it refuses
or fails on is set aside so the others go on, a sink that is down leaves everything due, and
a reset offers every record again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.records import fill_analysed

from edge.metrics import Metrics
from edge.sinks.worker import RecordsRefusedError, SinkWorker
from edge.store.records import Record
from edge.store.store import Store

N = 5


class Recording:
    """A sink that takes every record but those in `bad`, in one of three ways: refusing
    them (`RecordsRefusedError`), raising on any batch holding one, or (`down`) raising on
    everything."""

    name = "recording"

    def __init__(self, bad: set[str] | None = None, how: str = "refuse") -> None:
        self.bad, self.how = bad or set(), how
        self.down = False
        self.delivered: list[str] = []
        self.offered: list[list[str]] = []
        self.resets = 0
        self.offered_after_reset = threading.Event()

    def deliver(self, records: list[Record]) -> list[str]:
        ids = [r.id for r in records]
        self.offered.append(ids)
        if self.resets:
            self.offered_after_reset.set()
        if self.down:
            raise ConnectionError("the sink is down")
        if self.how == "raise" and self.bad & set(ids):
            raise ValueError("a record the sink cannot take")
        done = [i for i in ids if i not in self.bad]
        self.delivered += done
        if self.bad & set(ids):
            raise RecordsRefusedError(done, {i: "refused" for i in ids if i in self.bad})
        return done

    def reset(self) -> None:
        self.resets += 1
        self.delivered.clear()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store", "test")
    yield s
    s.close()


@pytest.fixture
def ids(store: Store) -> list[str]:
    return fill_analysed(store, [100 + i for i in range(N)])


def due_ids(store: Store, sink: str) -> list[str]:
    return [r.id for r in store.due(sink, 100)]


def worker(store: Store, sink: Recording, batch: int = 8) -> SinkWorker:
    return SinkWorker(store, sink, batch, 60.0, Metrics())


def test_a_new_sink_owes_every_analysed_record(store: Store, ids: list[str]) -> None:
    worker(store, Recording())
    assert due_ids(store, "recording") == ids


def test_what_the_sink_confirms_is_marked_done_in_batches(store: Store, ids: list[str]) -> None:
    sink = Recording()
    assert worker(store, sink, batch=2).drain() == N
    assert sink.delivered == ids
    assert [len(b) for b in sink.offered] == [2, 2, 1]
    assert store.count_due("recording") == 0


def test_a_refused_record_is_set_aside_and_the_others_are_marked_done(
    store: Store, ids: list[str]
) -> None:
    sink = Recording(bad={ids[1]})
    w = worker(store, sink)
    assert w.drain() == N - 1
    assert sink.delivered == [i for i in ids if i != ids[1]]
    assert due_ids(store, "recording") == [ids[1]], "set aside, still due"
    assert w.set_aside == 1
    assert w.drain() == 0
    assert sink.offered == [ids], "a record set aside is not offered again"


def test_a_sink_that_raises_on_a_batch_is_retried_one_by_one(store: Store, ids: list[str]) -> None:
    sink = Recording(bad={ids[2]}, how="raise")
    metrics = Metrics()
    w = SinkWorker(store, sink, 8, 60.0, metrics)
    assert w.drain() == N - 1
    assert sink.offered[0] == ids
    assert sink.offered[1:] == [[i] for i in ids]
    assert sink.delivered == [i for i in ids if i != ids[2]]
    assert due_ids(store, "recording") == [ids[2]]
    assert w.set_aside == 1
    assert 's3e_errors_total{kind="sink_recording"} 1.0' in metrics.render().decode()


def test_one_bad_record_does_not_hold_up_those_behind_it(store: Store, ids: list[str]) -> None:
    sink = Recording(bad={ids[0]}, how="raise")
    w = worker(store, sink, batch=2)
    assert w.drain() == N - 1
    assert sink.delivered == ids[1:]
    assert due_ids(store, "recording") == [ids[0]]


def test_a_sink_that_is_down_marks_nothing_and_everything_stays_due(
    store: Store, ids: list[str]
) -> None:
    sink = Recording()
    sink.down = True
    w = worker(store, sink)
    assert w.drain() == 0
    assert due_ids(store, "recording") == ids
    assert w.set_aside == 0, "no record is at fault when none goes through"
    sink.down = False
    assert w.drain() == N, "back up: everything is delivered"
    assert store.count_due("recording") == 0


def test_a_down_sink_with_one_record_due_sets_nothing_aside(store: Store) -> None:
    fill_analysed(store, [7])
    sink = Recording()
    sink.down = True
    w = worker(store, sink)
    assert w.drain() == 0 and w.set_aside == 0
    assert store.count_due("recording") == 1


def test_a_record_analysed_again_is_due_again(store: Store, ids: list[str]) -> None:
    sink = Recording()
    w = worker(store, sink)
    w.drain()
    fill_analysed(store, [100], seed=0)  # the same bytes: the same record, a new revision
    record = store.get(ids[0])
    assert record is not None and record.revision == 2
    assert due_ids(store, "recording") == [ids[0]]
    assert w.drain() == 1 and store.count_due("recording") == 0


def test_a_reset_makes_every_record_due_again(store: Store, ids: list[str]) -> None:
    sink = Recording(bad={ids[3]})
    w = worker(store, sink)
    w.drain()
    assert due_ids(store, "recording") == [ids[3]] and w.set_aside == 1
    sink.down = True  # what the reset makes due then stays due
    w.request_reset()
    w.start()  # the reset is done in the worker's thread, before its first delivery
    try:
        assert sink.offered_after_reset.wait(10), "offered again after the reset"
    finally:
        w.stop(10)
    assert sink.resets == 1 and w.resets == 1
    assert sink.offered[1] == ids, "the record set aside is offered again too"
    assert due_ids(store, "recording") == ids
    assert w.set_aside == 0

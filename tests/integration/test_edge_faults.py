"""Faults the daemon must ride out without losing an image: an analysis process killed, a
full disk, a writer that pauses mid-file, a sink that rejects one record or is down.

The analysis process is killed for real; a full disk and a sink failing on one record cannot
be produced on demand, so those two are injected."""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from support.common import wait_until

from edge.metrics import Metrics
from edge.sinks.worker import SinkWorker
from edge.store.store import Record, Store


def test_a_killed_analysis_process_is_replaced_and_no_image_is_lost(
    edge_config: Any, daemon_factory: Any, chest_images: dict[str, Any]
):
    d = daemon_factory(edge_config())
    worker = d.pool.analysers[0]
    first = worker.pid
    os.kill(first, signal.SIGKILL)
    inbox = Path(d.cfg.capture.folder.path)
    for p in sorted(chest_images["root"].glob("*.png"))[:6]:
        shutil.copy(p, inbox / p.name)
    wait_until(lambda: d.indexes.keyword.num_docs == 6, 60, "6 images indexed")
    assert worker.pid != first
    assert d.store.counts().get("failed", 0) == 0
    assert 's3e_errors_total{kind="analysis_crash"} 1.0' in d.metrics.render().decode()


def test_a_full_disk_keeps_the_file_in_the_folder_until_it_can_be_stored(
    edge_config: Any,
    daemon_factory: Any,
    chest_images: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    full = {"on": True}
    real = Store.write_atomic

    def write(self: Store, path: Path, data: bytes) -> None:
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, path, data)

    monkeypatch.setattr(Store, "write_atomic", write)
    d = daemon_factory(edge_config())
    inbox = Path(d.cfg.capture.folder.path)
    img = sorted(chest_images["root"].glob("*.png"))[0]
    shutil.copy(img, inbox / img.name)
    wait_until(
        lambda: any("No space left" in r.getMessage() for r in caplog.records),
        10,
        "the full-disk log line",
    )
    folder = d.sources[0].source
    scans = folder.scans
    wait_until(lambda: folder.scans >= scans + 2, 10, "a whole scan of the folder since")
    assert (inbox / img.name).exists() and d.store.counts() == {"due_index": 0}
    full["on"] = False
    wait_until(lambda: d.indexes.keyword.num_docs == 1, 20, "indexed once the disk has room")
    assert not (inbox / img.name).exists()
    assert not list((Path(d.cfg.data_dir) / "rejected").iterdir())


def test_a_writer_that_pauses_longer_than_settle_is_not_refused(
    edge_config: Any, daemon_factory: Any, chest_images: dict[str, Any]
):
    d = daemon_factory(
        edge_config(capture__folder__settle_s=0.1, capture__folder__poll_interval_s=3.0)
    )
    folder = d.sources[0].source
    data = sorted(chest_images["root"].glob("*.png"))[2].read_bytes()
    path = Path(d.cfg.capture.folder.path) / "slow.png"
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        # the writer pauses until the half file has settled, been taken and looked truncated
        wait_until(lambda: path in folder.awaiting_second_look, 20, "a second look due")
        f.write(data[len(data) // 2 :])
    wait_until(lambda: d.indexes.keyword.num_docs == 1, 20, "the completed file indexed")
    assert not list((Path(d.cfg.data_dir) / "rejected").iterdir())


class FlakySink:
    """Takes every record but those in `bad`; raises for everything while `down`."""

    name = "index"

    def __init__(self, bad: set[str]) -> None:
        self.bad, self.down, self.got = bad, False, []

    def deliver(self, records: list[Record]) -> list[str]:
        if self.down or any(r.id in self.bad for r in records):
            raise RuntimeError("cannot take this batch")
        self.got += [r.id for r in records]
        return [r.id for r in records]

    def reset(self) -> None:
        self.got = []


def test_one_record_a_sink_cannot_take_does_not_hold_up_the_rest(
    edge_config: Any, daemon_factory: Any, chest_images: dict[str, Any]
):
    d = daemon_factory(edge_config(capture__folder__enabled=False))
    for p in sorted(chest_images["root"].glob("*.png"))[:5]:
        d.ingestor.ingest(p.read_bytes(), "test", p.name)
    wait_until(lambda: d.indexes.keyword.num_docs == 5, 30, "5 indexed")
    d.part("index").worker.stop(5.0)  # else the daemon's own index sink takes them back first
    d.store.reset_sink("index")
    ids = [r.id for r in d.store.due("index", 10)]
    sink = FlakySink({ids[1]})
    worker = SinkWorker(d.store, sink, batch=4, interval=0.1, metrics=Metrics())
    sink.down = True
    assert worker.drain() == 0 and d.store.count_due("index") == 5  # down: nothing set aside
    sink.down = False
    assert worker.drain() == 4
    assert sink.got == [i for i in ids if i != ids[1]]
    assert [r.id for r in d.store.due("index", 10)] == [ids[1]]

"""The `index` sink: the search indexes kept up to the store, and the `reindex` command.

A record is searchable only once its document is committed, so the sink commits before it
reports records done. A changed index schema (`edge.search.index.SCHEMA_VERSION`) empties the
folder at open; the part then makes every record due again, and the sink rebuilds the index
from the store, logging its progress.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from edge.config import EdgeConfig, IndexConfig
from edge.metrics import Metrics
from edge.parts import BasePart, Command
from edge.search.indexes import Indexes
from edge.sinks.plugin import Context
from edge.sinks.worker import SinkWorker
from edge.store.records import Record
from edge.store.store import Store

log = logging.getLogger("s3e.index")


class IndexSink:
    """Makes records searchable: add, commit, and only then report them done."""

    name = "index"

    def __init__(self, indexes: Indexes, metrics: Metrics) -> None:
        self.indexes, self.metrics = indexes, metrics

    def deliver(self, records: list[Record]) -> list[str]:
        """Commit the documents, then bring the vector indexes up to the store."""
        t0 = time.perf_counter()
        self.indexes.keyword.add(records)
        self.indexes.keyword.commit()
        self.indexes.refresh()
        self.metrics.stage.labels("index_commit").observe(time.perf_counter() - t0)
        self.metrics.indexed.inc(len(records))
        return [r.id for r in records]

    def reset(self) -> None:
        self.indexes.reset()


class IndexPart(BasePart):
    name = "index"

    def __init__(self, cfg: IndexConfig, ctx: Context) -> None:
        self.store: Store = ctx.store
        self.indexes = ctx.indexes
        sink = IndexSink(self.indexes, ctx.metrics)
        self.worker = SinkWorker(
            ctx.store, sink, cfg.commit_every, cfg.commit_interval_s, ctx.metrics
        )
        ctx.hooks.on_analysed.append(self.worker.notify)
        ctx.hooks.on_caught_up.append(self.worker.flush)
        m, keyword = ctx.metrics, self.indexes.keyword
        m.gauge("s3e_index_documents", "Documents in the search index", lambda: keyword.num_docs)
        m.gauge("s3e_index_size_bytes", "Index size on disk", keyword.size_bytes)
        m.gauge(
            "s3e_queue_index",
            "Analysed records not yet searchable",
            lambda: ctx.store.count_due("index"),
        )

    def start(self) -> None:
        self.indexes.open()
        if self.indexes.keyword.rebuilt:
            n = self.store.reset_sink("index")
            log.warning("rebuilding the search index from the store: %d records", n)
            threading.Thread(
                target=self._report_rebuild, args=(n,), daemon=True, name="index-rebuild-progress"
            ).start()
        self.worker.start()

    def _report_rebuild(self, total: int) -> None:
        while (left := self.store.count_due("index")) and not self.worker.stopped_event.is_set():
            log.info("index rebuild: %d of %d records", total - left, total)
            if self.worker.stopped_event.wait(5.0):
                return
        log.info("index rebuild done: %d documents", self.indexes.keyword.num_docs)

    def stop(self, deadline: float) -> None:
        self.worker.stop(max(1.0, deadline - time.monotonic()))
        self.indexes.close()

    @property
    def threads(self) -> list[threading.Thread]:
        return [self.worker.thread]

    def health(self) -> dict[str, Any]:
        return {
            "documents": self.indexes.keyword.num_docs,
            "set_aside": self.worker.set_aside,
            "vectors": self.indexes.health(),
        }

    def commands(self) -> dict[str, Command]:
        return {"reindex": self._cmd_reindex}

    def _cmd_reindex(self, request: dict[str, Any]) -> dict[str, Any]:
        """Empty the index and index every record again, in the sink's own thread."""
        self.worker.request_reset()
        return {"queued": True}


class IndexPlugin:
    key = "index"
    Config = IndexConfig
    turned_on_by = "nothing: it is always on"

    def enabled(self, cfg: EdgeConfig) -> bool:
        return True

    def build(self, cfg: EdgeConfig, ctx: Context) -> IndexPart:
        return IndexPart(cfg.index, ctx)


plugin = IndexPlugin()

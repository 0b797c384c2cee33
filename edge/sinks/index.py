"""The search index as a part: the Tantivy index, its sink worker, and the `reindex` command.

A changed index schema (see `edge.search.index.SCHEMA_VERSION`) empties the folder at open; the part
then makes every record due again, and the sink rebuilds the index from the store, logging
its progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.parts import BasePart, Command, Context
from edge.search.index import SearchIndex
from edge.search.vectors import VectorIndex
from edge.sinks.worker import IndexSink, SinkWorker

log = logging.getLogger("s3e.index")


class IndexPart(BasePart):
    name = "index"

    def __init__(self, ctx: Context, bundle: Callable[[], str]) -> None:
        """`bundle`: the version of the bundle analysing now (its vectors are indexed)."""
        cfg = ctx.cfg
        self.store, self.bundle = ctx.store, bundle
        self.index = SearchIndex(Path(cfg.data_dir) / "index", cfg.index.heap_mb)
        folder = Path(cfg.data_dir) / "vectors"
        self.latent = VectorIndex(ctx.store, folder, "latent", "l2sq", bundle)
        self.profile = VectorIndex(ctx.store, folder, "profile", "ip", bundle, "columns")
        sink = IndexSink(self.index, ctx.metrics, [self.latent, self.profile])
        self.worker = SinkWorker(
            ctx.store, sink, cfg.index.commit_every, cfg.index.commit_interval_s, ctx.metrics
        )
        ctx.hooks.on_analysed.append(self.worker.notify)
        ctx.hooks.on_caught_up.append(self.worker.flush)
        m, index = ctx.metrics, self.index
        m.gauge("s3e_index_documents", "Documents in the search index", lambda: index.num_docs)
        m.gauge("s3e_index_size_bytes", "Index size on disk", index.size_bytes)
        m.gauge(
            "s3e_queue_index",
            "Analysed records not yet searchable",
            lambda: ctx.store.count_due("index"),
        )

    def start(self) -> None:
        for v in (self.latent, self.profile):
            v.open()
            threading.Thread(target=v.refresh, daemon=True, name=f"{v.blob}-catch-up").start()
        if self.index.rebuilt:
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
        log.info("index rebuild done: %d documents", self.index.num_docs)

    def stop(self, deadline: float) -> None:
        self.worker.stop(max(1.0, deadline - time.monotonic()))
        self.index.close()
        for v in (self.latent, self.profile):
            v.save(force=True)

    @property
    def threads(self) -> list[threading.Thread]:
        return [self.worker.thread]

    def health(self) -> dict[str, Any]:
        return {
            "documents": self.index.num_docs,
            "set_aside": self.worker.set_aside,
            "vectors": {v.blob: v.health() for v in (self.latent, self.profile)},
        }

    def commands(self) -> dict[str, Command]:
        return {"reindex": self._cmd_reindex}

    def _cmd_reindex(self, request: dict[str, Any]) -> dict[str, Any]:
        """Empty the index and index every record again, in the sink's own thread."""
        self.worker.request_reset()
        return {"queued": True}

"""`s3e-edge reindex`: the search index rebuilt from the records, the daemon stopped."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from edge.cli.command import EXIT_STARTUP, Command
from edge.config import EdgeConfig
from edge.search.index import IndexBusyError, SearchIndex
from edge.store.records import Record
from edge.store.store import Store


def run(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    """Rebuild the index from SQLite. The daemon must be stopped: it holds the only writer."""
    try:
        index = SearchIndex(Path(cfg.data_dir) / "index", cfg.index.heap_mb)
    except IndexBusyError as e:
        print(f"{e}; stop it first (or send it the MQTT 'reindex' command)", file=sys.stderr)
        return EXIT_STARTUP
    store = Store(cfg.data_dir, cfg.device_id)
    index.clear()
    store.register_sink("index")
    store.reset_sink("index")
    done: list[tuple[int, int]] = []
    batch: list[Record] = []
    with tqdm(
        total=store.counts().get("analysed", 0), desc="reindex", unit="rec", disable=None
    ) as bar:

        def flush() -> None:
            index.add(batch, replace=False)  # a cleared index: nothing to replace
            done.extend((r.seq, r.revision) for r in batch)
            bar.update(len(batch))
            batch.clear()

        for rec in store.iter_analysed():
            batch.append(rec)
            if len(batch) >= 1000:
                flush()
        flush()
    index.commit()
    store.mark_done("index", done)
    print(f"reindexed {index.num_docs} records into {index.path}")
    index.close()
    store.close()
    return 0


COMMAND = Command("reindex", "rebuild the search index from the records (daemon stopped)", run)

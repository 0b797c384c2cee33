"""`s3e-edge reanalyze`: records analysed again with another bundle, the daemon stopped."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

from edge.analysis.bundle import load_bundle
from edge.analysis.pool import AnalysisPool
from edge.analysis.swap import StartupError, start_analysers
from edge.cli.command import EXIT_CONFIG, EXIT_STARTUP, Command
from edge.config import EdgeConfig
from edge.ingest.ingestor import Ingestor
from edge.metrics import Metrics
from edge.search.index import IndexBusyError, SearchIndex
from edge.store.store import Store


def run(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    """Analyse again, with `--bundle` (default: the config's, and its `model.catch_all`),
    every record another bundle analysed (with `--older-than`, only those of bundles made
    before that one). The daemon must be stopped (a running one does this itself: POST
    /admin/bundle, MQTT cmd/bundle); its sinks deliver the new revisions at its next start."""
    try:
        SearchIndex(Path(cfg.data_dir) / "index", cfg.index.heap_mb).close()
        bundle = load_bundle(args.bundle or cfg.model.bundle)
        routed = [load_bundle(cfg.model.catch_all)] if cfg.model.catch_all else []
        older = load_bundle(args.older_than).doc.created if args.older_than else None
    except IndexBusyError as e:
        print(f"{e}: a running daemon re-analyses itself (POST /admin/bundle)", file=sys.stderr)
        return EXIT_STARTUP
    except ValueError as e:
        print(f"bundle: {e}", file=sys.stderr)
        return EXIT_CONFIG
    store = Store(cfg.data_dir, cfg.device_id)
    try:
        analysers = start_analysers([bundle, *routed], cfg.model)
    except StartupError as e:
        print(f"cannot start the analysis: {e}", file=sys.stderr)
        store.close()
        return EXIT_STARTUP
    specs = [b.doc.preprocessing for b in (bundle, *routed)]
    ingestor = Ingestor(store, specs, cfg, Metrics())
    pool = AnalysisPool(store, ingestor, analysers, Metrics(), lambda: None, 1.0, older)
    total = store.count_stale(pool.version, older) + store.count_pending()
    pool.start()
    tick = threading.Event()
    try:
        with tqdm(total=total, desc=f"reanalyze {bundle.name}", unit="img", disable=None) as bar:
            while left := store.count_stale(pool.version, older) + store.count_pending():
                bar.n = total - left
                bar.refresh()
                tick.wait(0.5)
            bar.n = total
    except KeyboardInterrupt:
        print("stopped; run it again to finish (nothing done is lost)", file=sys.stderr)
    pool.stop(time.monotonic() + cfg.shutdown_timeout_s)
    ingestor.close()
    store.close()
    print(f"re-analysed {total} records with {pool.version}")
    return 0


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bundle", help="a shipped bundle's name or a bundle folder (default: model.bundle)"
    )
    p.add_argument(
        "--older-than",
        metavar="BUNDLE",
        help="only records analysed by bundles made before this one",
    )


COMMAND = Command(
    "reanalyze",
    "analyse the records again with another bundle (daemon stopped; a running daemon: "
    "POST /admin/bundle)",
    run,
    arguments,
)

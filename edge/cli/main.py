"""`s3e-edge`: run the daemon, check a config, rebuild the index, subscribe to a device's
events, print the OpenAPI and MQTT schemas.

Exit codes: 0 done, 2 bad config or arguments, 3 could not start (bundle, port, index lock,
accelerator).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from edge.config import ConfigError, EdgeConfig, HttpConfig, load_config
from edge.logs import setup_logging
from edge.search.index import IndexBusyError, SearchIndex

log = logging.getLogger("s3e")
EXIT_CONFIG, EXIT_STARTUP = 2, 3


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help="TOML config file (default: built-in defaults: shipped chest-int8 bundle, ./inbox, "
        "./var/s3e, http://127.0.0.1:8080)",
    )


def cmd_run(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    from edge.daemon import Daemon, StartupError

    try:
        daemon = Daemon(cfg)
    except (StartupError, IndexBusyError) as e:
        log.error("cannot start: %s", e)
        return EXIT_STARTUP
    try:
        return daemon.run()
    except StartupError as e:
        log.error("cannot start: %s", e)
        daemon.stop()
        return EXIT_STARTUP


def cmd_check_config(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    from edge.analysis.bundle import load_bundle

    try:
        bundle = load_bundle(cfg.model.bundle)
    except ValueError as e:
        print(f"model.bundle: {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"config ok; bundle {bundle.name} ({bundle.precision}) verified at {bundle.root}")
    if args.show:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    return 0


def cmd_reindex(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    """Rebuild the index from SQLite. The daemon must be stopped: it holds the only writer."""
    from edge.store.records import Record
    from edge.store.store import Store

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


def cmd_reanalyze(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    """Analyse again, with `--bundle` (default: the config's), every record another bundle
    analysed (with `--older-than`, only those of bundles made before that one). The daemon
    must be stopped (a running one does this itself: POST /admin/bundle, MQTT cmd/bundle);
    its sinks deliver the new revisions at its next start."""
    import threading
    import time

    from edge.analysis.bundle import load_bundle
    from edge.analysis.pool import AnalysisPool
    from edge.analysis.swap import StartupError, start_analysers
    from edge.ingest.ingestor import Ingestor
    from edge.metrics import Metrics
    from edge.store.store import Store

    try:
        SearchIndex(Path(cfg.data_dir) / "index", cfg.index.heap_mb).close()
        bundle = load_bundle(args.bundle or cfg.model.bundle)
        older = load_bundle(args.older_than).doc.created if args.older_than else None
    except IndexBusyError as e:
        print(f"{e}: a running daemon re-analyses itself (POST /admin/bundle)", file=sys.stderr)
        return EXIT_STARTUP
    except ValueError as e:
        print(f"bundle: {e}", file=sys.stderr)
        return EXIT_CONFIG
    store = Store(cfg.data_dir, cfg.device_id)
    try:
        analysers = start_analysers(bundle, cfg.model)
    except StartupError as e:
        print(f"cannot start the analysis: {e}", file=sys.stderr)
        store.close()
        return EXIT_STARTUP
    ingestor = Ingestor(store, bundle.doc.preprocessing, cfg, Metrics())
    pool = AnalysisPool(store, ingestor, analysers, Metrics(), lambda: None, 1.0, older)
    total = store.count_stale(bundle.version, older) + store.count_pending()
    pool.start()
    tick = threading.Event()
    try:
        with tqdm(total=total, desc=f"reanalyze {bundle.name}", unit="img", disable=None) as bar:
            while left := store.count_stale(bundle.version, older) + store.count_pending():
                bar.n = total - left
                bar.refresh()
                tick.wait(0.5)
            bar.n = total
    except KeyboardInterrupt:
        print("stopped; run it again to finish (nothing done is lost)", file=sys.stderr)
    pool.stop(time.monotonic() + cfg.shutdown_timeout_s)
    ingestor.close()
    store.close()
    print(f"re-analysed {total} records with {bundle.version}")
    return 0


def cmd_openapi(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    print(json.dumps(openapi_schema(), indent=1, sort_keys=True))
    return 0


def cmd_mqtt_schema(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    from edge.sinks.mqtt.events import json_schema

    print(json.dumps(json_schema(), indent=1, sort_keys=True))
    return 0


def openapi_schema() -> dict[str, object]:
    """The HTTP API's schema, built without models or data (for docs/openapi.json)."""
    from edge.api.app import build_app

    return dict(build_app(HttpConfig()).openapi())


COMMANDS = {
    "run": (cmd_run, "run the daemon until SIGTERM/SIGINT"),
    "check-config": (cmd_check_config, "validate the config and verify the model bundle"),
    "reindex": (cmd_reindex, "rebuild the search index from the records (daemon stopped)"),
    "reanalyze": (
        cmd_reanalyze,
        "analyse the records again with another bundle (daemon "
        "stopped; a running daemon: POST /admin/bundle)",
    ),
    "openapi": (cmd_openapi, "print the HTTP API's OpenAPI schema"),
    "mqtt-schema": (cmd_mqtt_schema, "print the JSON Schema of the MQTT payloads"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s3e-edge",
        description="S3E on-device daemon: watches for images, captions, segments and scores "
        "them with a TFLite model bundle, and serves local search over HTTP.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, (_, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        _config_arg(sp)
        if name == "check-config":
            sp.add_argument("--show", action="store_true", help="print the resolved config")
        if name == "reanalyze":
            sp.add_argument(
                "--bundle",
                help="a shipped bundle's name or a bundle folder (default: model.bundle)",
            )
            sp.add_argument(
                "--older-than",
                metavar="BUNDLE",
                help="only records analysed by bundles made before this one",
            )
    from edge.cli.subscribe import add_arguments

    sp = sub.add_parser(
        "subscribe",
        help="print or save the events of one or every device (validated, deduplicated)",
        description="The reference MQTT subscriber: validates each event against the JSON "
        "Schema, drops repeated ids, keeps a persistent session.",
    )
    add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "subscribe":
        from edge.cli.subscribe import run

        setup_logging("text", "info")
        return run(args)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"config error:\n{e}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.log_format, cfg.log_level)
    fn, _ = COMMANDS[args.command]
    return fn(cfg, args)


if __name__ == "__main__":
    sys.exit(main())

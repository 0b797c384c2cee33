"""`s3e-sync`: the cloud sync on its own, over the same store and config as the daemon.

`status` reads the store only (offline, and while the daemon runs). `run --once` drains the
queue and exits, with a progress bar; `run` keeps syncing what the daemon stores, for a device
whose daemon leaves S3 to a process of its own. Exit codes: 0 done, 1 records left, 2 bad
config, 3 another process syncs this store.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cloud_sync.config import S3Config
from cloud_sync.service import SyncLockedError, SyncService, status
from edge.config import ConfigError, EdgeConfig, load_config
from edge.logs import setup_logging
from edge.metrics import Metrics
from edge.store.records import Record
from edge.store.store import Store

log = logging.getLogger("s3e.sync")
EXIT_LEFT, EXIT_CONFIG, EXIT_LOCKED = 1, 2, 3


def _when(ts: float | None) -> str:
    if not ts:
        return "never"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def cmd_status(cfg: EdgeConfig, store: Store, args: argparse.Namespace) -> int:
    s = status(cfg.section("s3", S3Config), store)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    pend, local = s["pending"], s["local"]
    quota = f" of {local['quota_bytes'] / 1e6:.1f} MB quota" if local["quota_bytes"] else ""
    rate = f"{s['throughput_mb_s']:.2f} MB/s" if s["throughput_mb_s"] is not None else "n/a"
    lines = [
        f"bucket       s3://{s['bucket']} at {s['endpoint']}",
        f"syncing      {'yes, pid ' + str(s['syncing_pid']) if s['syncing'] else 'no'}",
        f"pending      {pend['records']} records, {pend['bytes'] / 1e6:.1f} MB",
        f"synced       {s['synced']['objects']} objects, {s['synced']['bytes'] / 1e6:.1f} MB "
        f"(last {_when(s['last_ok_at'])})",
        f"throughput   {rate} in the last pass",
        f"last error   {s['last_error'] or 'none'}"
        + (f" ({_when(s['last_error_at'])})" if s["last_error"] else ""),
        f"local        {local['originals_bytes'] / 1e6:.1f} MB of originals{quota}",
    ]
    print("\n".join(lines))
    return 0


def cmd_run(cfg: EdgeConfig, store: Store, args: argparse.Namespace) -> int:
    try:
        service = SyncService(cfg.section("s3", S3Config), store, Metrics())
    except ValueError as e:
        print(f"config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.once:
        n, size = store.due_totals("s3")
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"{n} records", disable=args.quiet)

        def synced(rec: Record) -> None:
            bar.update(rec.size)

        service.sink.on_synced = synced
        try:
            left = service.drain_once(args.max_wait)
        except SyncLockedError as e:
            print(e, file=sys.stderr)
            return EXIT_LOCKED
        finally:
            bar.close()
        if left:
            print(left, file=sys.stderr)
            return EXIT_LEFT
        print(f"done: {n} records synced to s3://{cfg.section('s3', S3Config).bucket}")
        return 0
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        service.lock.acquire()
    except SyncLockedError as e:
        print(e, file=sys.stderr)
        return EXIT_LOCKED
    service.start()
    while not stop.wait(0.5):
        pass
    service.stop(cfg.shutdown_timeout_s)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s3e-sync",
        description="Sync a device's originals (and a JSON sidecar each) to S3, from the "
        "daemon's store, with the [s3] section of its config.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("status", "what waits to be synced, the last error, the last throughput"),
        ("run", "sync until stopped (SIGTERM), or with --once drain the queue and exit"),
    ):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument(
            "--config",
            "-c",
            type=Path,
            default=None,
            help="the daemon's TOML config ([s3] and data_dir)",
        )
        if name == "status":
            sp.add_argument("--json", action="store_true", help="print JSON")
        else:
            sp.add_argument("--once", action="store_true", help="drain the queue and exit")
            sp.add_argument(
                "--max-wait",
                type=float,
                default=120.0,
                metavar="S",
                help="with --once: keep retrying through an outage this long "
                "(default: %(default)s s)",
            )
            sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"config error:\n{e}", file=sys.stderr)
        return EXIT_CONFIG
    if not cfg.section("s3", S3Config).enabled:
        print(
            f"{args.config or 'the default config'}: s3.bucket is empty, cloud sync is off",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    setup_logging(cfg.log_format, cfg.log_level)
    store = Store(cfg.data_dir, cfg.device_id)
    try:
        fn = cmd_status if args.command == "status" else cmd_run
        return fn(cfg, store, args)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())

"""Cloud sync throughput against a local OpenStack Swift (S3 API), as the tests start it.

    python bench/s3.py --json bench/results/s3.json

Needs Swift and memcached (`apt-get install swift swift-proxy swift-account swift-container
swift-object python3-swift memcached`).

Small (200 KB) and large (20 MB) originals in a real store, synced by `SyncService` (what the
daemon and `s3e-sync run --once` run: Content-MD5 on every PUT and part, a HEAD to verify each
object, a JSON sidecar each, the record marked in SQLite) at concurrency 1, 4 and 8; against
plain boto3 `upload_file` of the same files (s3transfer, what `aws s3 cp` does: no verify, no
sidecar) from the same number of threads, in the same run, to a fresh bucket each time. The
ratio `sync_over_plain_time` is what verification, sidecars and the durable queue cost.
Then the small set again under a bandwidth cap of 2 and 8 MB/s: the rate achieved.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from boto3.s3.transfer import TransferConfig
from support.records import fill_analysed
from support.s3_servers import Swift

from cloud_sync.config import S3Config
from cloud_sync.service import SyncService
from edge.metrics import Metrics
from edge.store.store import Store


def bucket(swift: Swift) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    swift.client().create_bucket(Bucket=name)
    return name


def run_sync(swift: Swift, store: Store, concurrency: int, cap_mb_s: float = 0.0) -> float:
    cfg = S3Config(
        bucket=bucket(swift),
        endpoint_url=swift.endpoint,
        region=swift.region,
        access_key_id=swift.access_key,
        secret_access_key=swift.secret_key,
        addressing_style="path",
        concurrency=concurrency,
        bandwidth_mb_s=cap_mb_s,
    )
    store.reset_sink("s3")
    service = SyncService(cfg, store, Metrics())
    t0 = time.perf_counter()
    left = service.drain_once(60)
    secs = time.perf_counter() - t0
    if left:
        raise RuntimeError(left)
    return secs


def run_plain(swift: Swift, files: list[Path], concurrency: int) -> float:
    client = swift.client()
    name = bucket(swift)
    transfer = TransferConfig(
        multipart_threshold=16 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024
    )

    def one(p: Path) -> None:
        client.upload_file(str(p), name, f"plain/{p.name}", Config=transfer)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--small", type=int, default=200, help="200 KB originals")
    p.add_argument("--large", type=int, default=6, help="20 MB originals")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        swift = Swift(tmp / "swift").start()
        try:
            for kind, n, size in (
                ("small", args.small, 200_000),
                ("large", args.large, 20_000_000),
            ):
                store = Store(tmp / kind, "bench")
                ids = fill_analysed(store, [size] * n, seed=size)
                files = [store.original_path(i, "jpg") for i in ids]
                mb = n * size / 1e6
                for concurrency in (1, 4, 8):
                    ours = run_sync(swift, store, concurrency)
                    plain = run_plain(swift, files, concurrency)
                    r = {
                        "kind": kind,
                        "objects": n,
                        "object_bytes": size,
                        "concurrency": concurrency,
                        "sync_mb_s": round(mb / ours, 2),
                        "sync_objects_s": round(n / ours, 1),
                        "plain_mb_s": round(mb / plain, 2),
                        "plain_objects_s": round(n / plain, 1),
                        "sync_over_plain_time": round(ours / plain, 2),
                    }
                    out["runs"].append(r)
                    print(
                        f"{kind:>5} x{n:<4} c={concurrency}: sync {r['sync_mb_s']:7.1f} MB/s "
                        f"{r['sync_objects_s']:6.1f} obj/s | plain upload_file "
                        f"{r['plain_mb_s']:7.1f} MB/s {r['plain_objects_s']:6.1f} obj/s | "
                        f"sync takes {r['sync_over_plain_time']:.2f}x"
                    )
                if kind == "small":  # the bandwidth cap: what a capped run achieves
                    for cap in (2.0, 8.0):
                        secs = run_sync(swift, store, 8, cap)
                        c = {"cap_mb_s": cap, "achieved_mb_s": round(mb / secs, 2)}
                        out.setdefault("capped", []).append(c)
                        print(f"small, concurrency 8, cap {cap} MB/s: {c['achieved_mb_s']} MB/s")
                store.close()
        finally:
            swift.stop()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

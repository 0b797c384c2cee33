"""The fleet at scale: ingest workers, central search over 100k-1M rows, and re-analysis.

    nice python bench/fleet.py --sizes 100000 1000000 --events 5000 --json bench/results/fleet.json

One pool feeds every part: camera-like JPEGs of chest phantoms analysed by `chest-int8` here,
timed: the device's own rate (part 3's reference).
1. Ingest: N device events (`edge.sinks.mqtt`'s JSON, vectors included, each a pool analysis under a
   new id and device) queued QoS 1 on a real mosquitto for the persistent sessions of
   `s3e-fleet ingest` processes, then drained by them into a Lance table on moto's S3 server:
   events/s per worker, for 1 and 2 workers.
2. Search: generated rows (pool rows as the reconciler makes them, noise on the vectors and
   anomaly, new ids, devices and times) streamed into a Lance table on the LOCAL filesystem
   (moto keeps all in memory: no fair store at 1M rows), indexed as `fleet.maintain` does;
   p50/p99 of `FleetSearch.search` per mode over real query words (typos too), every other one
   filtered by device (`answered`: the share that found anything); query encoding alone.
3. Re-analysis: the pool synced as a device does and merged by the reconciler, through
   `s3e-fleet reanalyze --workers 1` (Ray, its own process): images/s over the device's.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pyarrow as pa
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCEDB_LOG", "error")  # else 2 deprecation lines per search

from edge_e2e import camera_jpegs
from fleet_data import batches, device_rate, make_events, pool_rows, record
from support.common import wait_until
from support.mqtt_broker import Broker
from support.s3_servers import Moto

from cloud_sync import keys
from cloud_sync.client import make_client
from cloud_sync.config import S3Config
from edge.analysis.bundle import Bundle, load_bundle
from edge.search.engine import Filters, SearchRequest
from edge.store.records import Analysis
from fleet.archive import Archive, vector_dims
from fleet.config import load_config
from fleet.maintain import ensure_indexes
from fleet.reconcile import reconcile
from fleet.search import FleetSearch

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench.fleet")
BUNDLE, MODES, MAX_BYTES = "chest-int8", ("keyword", "semantic", "hybrid"), 64 * 2**20
QUERIES = [
    "pneumonia",
    "cardiomegaly",
    "effusion",
    "nodule",
    "left lower zone",
    "right upper zone consolidation",
    "pleural effusion",
    "enlarged heart",
    "opacity",
    "small left effusion",
    "no acute finding",
    "clear lungs",
    "pnuemonia",
    "efusion",
    "cardiomegally",
    "nodle",
    "consolidation left",
    "blunting of the costophrenic angle",
    "pulmonary nodule right",
    "airspace opacity",
    "normal chest radiograph",
    "cardiac silhouette enlarged",
    "lower zone pneumonia",
    "lung mass",
    "heart",
]
"""An odd count: over repeated passes each query is asked both with and without a filter."""


def percentiles(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


# -- services ---------------------------------------------------------------------------------
def bucket(moto: Moto, name: str) -> S3Config:
    moto.client().create_bucket(Bucket=name)
    return S3Config(
        bucket=name,
        endpoint_url=moto.endpoint,
        addressing_style="path",
        access_key_id=moto.access_key,
        secret_access_key=moto.secret_key,
    )


def fleet_toml(
    path: Path, port: int, s3: S3Config, uri: str, group: str = "", cid: str = ""
) -> Path:
    secret = s3.secret_access_key.get_secret_value()
    path.write_text(
        "\n".join(
            [
                "[mqtt]",
                'host = "127.0.0.1"',
                f"port = {port}",
                f'share_group = "{group or "bench"}"',
                f'client_id = "{cid}"',
                "[s3]",
                f'endpoint_url = "{s3.endpoint_url}"',
                f'bucket = "{s3.bucket}"',
                f'access_key_id = "{s3.access_key_id}"',
                f'secret_access_key = "{secret}"',
                'addressing_style = "path"',
                "[archive]",
                f'uri = "{uri}"',
                f'bundle = "{BUNDLE}"',
                "",
            ]
        )
    )
    return path


# -- 1. ingest --------------------------------------------------------------------------------
def publish(port: int, msgs: list[tuple[str, bytes]]) -> float:
    """Every event QoS 1 from one client; seconds until the broker acknowledged all."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-devices", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.perf_counter()
    for info in [c.publish(topic, payload, qos=1) for topic, payload in msgs]:
        info.wait_for_publish(120)
    seconds = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return seconds


def workers(tomls: list[Path], logs: list[Path]) -> list[subprocess.Popen[bytes]]:
    """`s3e-fleet ingest` processes, once each has subscribed (its session resumed)."""
    procs = []
    for toml, path in zip(tomls, logs, strict=True):
        with open(path, "ab") as out:
            argv = [sys.executable, "-m", "fleet.cli", "ingest", "--config", str(toml)]
            procs.append(subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=out))
    wait_until(lambda: all("subscribed to" in p.read_text() for p in logs), 120, "subscribed")
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)


def ingest(
    n_workers: int,
    msgs: list[tuple[str, bytes]],
    port: int,
    moto: Moto,
    work: Path,
    dims: tuple[int, int],
) -> dict[str, Any]:
    """Sessions made, events queued while the workers are away, then the drain timed from the
    workers' subscription to the last row committed (the table polled every 0.05 s): the
    workers' rate, not the publisher's nor the imports'."""
    tag = f"w{n_workers}"
    s3 = bucket(moto, f"bench-ingest-{tag}")
    uri = f"s3://{s3.bucket}/fleet"
    table = Archive(uri, "images", s3, dims).table  # created empty: the poller needs it
    tomls = [
        fleet_toml(work / f"{tag}-{k}.toml", port, s3, uri, tag, f"bench-{tag}-{k}")
        for k in range(n_workers)
    ]
    stop(workers(tomls, [work / f"{tag}-{k}-first.log" for k in range(n_workers)]))
    pub_s = publish(port, msgs)
    log.info("ingest x%d: %d events queued in %.1f s; draining", n_workers, len(msgs), pub_s)
    procs = workers(tomls, [work / f"{tag}-{k}.log" for k in range(n_workers)])
    t0 = time.monotonic()
    try:
        wait_until(
            lambda: table.checkout_latest() or table.count_rows() >= len(msgs),
            1800,
            "every event in the table",
        )
        seconds = time.monotonic() - t0
    finally:
        stop(procs)
    got = table.search().select(["device", "id"]).limit(None).to_arrow()
    unique = len(set(zip(got["device"].to_pylist(), got["id"].to_pylist(), strict=True)))
    rate = len(msgs) / seconds
    log.info("ingest x%d: %.0f events/s (%.0f per worker)", n_workers, rate, rate / n_workers)
    return {
        "workers": n_workers,
        "events": len(msgs),
        "seconds": round(seconds, 2),
        "events_per_s": round(rate, 1),
        "events_per_s_per_worker": round(rate / n_workers, 1),
        "rows": got.num_rows,
        "duplicates": got.num_rows - unique,
        "publish_events_per_s": round(len(msgs) / pub_s, 1),
    }


# -- 2. search --------------------------------------------------------------------------------
def build(
    folder: Path, n: int, base: pa.RecordBatch, devices: list[str], bundle: Bundle
) -> tuple[Archive, dict[str, Any]]:
    """The table written as one stream, then `fleet.maintain.maintain`'s two steps, timed
    apart: the indexes, then compaction and index refresh."""
    archive = Archive(str(folder), f"images_{n}", S3Config(), vector_dims(bundle))
    t0 = time.monotonic()
    archive.table.add(
        pa.RecordBatchReader.from_batches(base.schema, batches(n, base, devices, 20_000))
    )
    t1 = time.monotonic()
    log.info("search %d: written in %.1f s; indexing", n, t1 - t0)
    made = ensure_indexes(archive)
    t2 = time.monotonic()
    archive.table.optimize()
    t3 = time.monotonic()
    disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    log.info("search %d: indexes %.1f s, optimize %.1f s, %.0f MB", n, t2 - t1, t3 - t2, disk / 1e6)
    return archive, {
        "rows": archive.count(),
        "write_s": round(t1 - t0, 1),
        "rows_per_s_written": round(n / (t1 - t0)),
        "indexes": made,
        "index_s": round(t2 - t1, 1),
        "optimize_s": round(t3 - t2, 1),
        "disk_mb": round(disk / 1e6),
    }


def time_mode(
    search: FleetSearch, mode: str, n: int, devices: list[str], queries: list[str] = QUERIES
) -> dict[str, Any]:
    """`n` searches (top 20 with facets and total, as `/search` asks), every other one
    filtered by a device; one warm-up first (index files opened once). `answered`: the share
    that found anything."""
    search.search(SearchRequest(queries[0], mode=mode))
    ms: tuple[list[float], list[float]] = ([], [])
    answered = 0
    for i in range(n):
        f = Filters(device=devices[i % len(devices)]) if i % 2 else Filters()
        t0 = time.perf_counter()
        answered += bool(search.search(SearchRequest(queries[i % len(queries)], f, mode)).hits)
        ms[i % 2].append((time.perf_counter() - t0) * 1e3)
    return {
        **percentiles(ms[0] + ms[1]),
        "unfiltered": percentiles(ms[0]),
        "device_filter": percentiles(ms[1]),
        "answered": round(answered / n, 2),
    }


def search_size(
    n: int, work: Path, base: pa.RecordBatch, devices: list[str], bundle: Bundle, queries: int
) -> dict[str, Any]:
    archive, out = build(work / f"search-{n}", n, base, devices, bundle)
    search = FleetSearch(archive, bundle)
    out["modes"] = {mode: time_mode(search, mode, queries, devices) for mode in MODES}
    out["recent_no_query"] = time_mode(search, "hybrid", 10, devices, [""])  # the page's first view
    log.info("search %d: %s", n, {m: v["p50_ms"] for m, v in out["modes"].items()})
    enc, ms = search.encoder, []
    assert enc is not None
    for q in QUERIES * 4:
        t0 = time.perf_counter()
        enc.encode(q)
        ms.append((time.perf_counter() - t0) * 1e3)
    out["query_encoding"] = percentiles(ms)
    shutil.rmtree(work / f"search-{n}")  # the next size needs the disk
    return out


# -- 3. re-analysis ---------------------------------------------------------------------------
def reanalysis(
    pool: list[Analysis],
    images: list[bytes],
    bundle: Bundle,
    moto: Moto,
    work: Path,
    device: dict[str, Any],
    side: int,
) -> dict[str, Any]:
    """The pool synced to S3 as `cloud_sync` lays it out, merged by one reconciler pass, then
    `s3e-fleet reanalyze` as an operator runs it; its rate over the device's."""
    s3 = bucket(moto, "bench-archive")
    client, now, uri = make_client(s3), time.time(), f"s3://{s3.bucket}/fleet"
    for i, (a, data) in enumerate(zip(pool, images, strict=True)):
        rec = record(
            a, bundle, f"ward-{i % 2}", hashlib.sha256(data).hexdigest(), now - 30 * i, side
        )
        okey, tkey = keys.original_key(s3.prefix, rec), keys.thumbnail_key(s3.prefix, rec)
        client.put_object(Bucket=s3.bucket, Key=okey, Body=data)
        client.put_object(Bucket=s3.bucket, Key=tkey, Body=data)  # the job reads no thumbnail
        client.put_object(
            Bucket=s3.bucket,
            Key=keys.sidecar_key(s3.prefix, rec),
            Body=keys.sidecar(rec, okey, tkey, a.blobs),
        )
    merged = reconcile(
        Archive(uri, "images", s3, vector_dims(bundle)), client, s3.bucket, s3.prefix, 2
    )
    toml = fleet_toml(work / "reanalyze.toml", 1883, s3, uri)
    argv = [
        sys.executable,
        "-m",
        "fleet.cli",
        "reanalyze",
        "--bundle",
        BUNDLE,
        "--workers",
        "1",
        "--config",
        str(toml),
    ]
    log.info("reanalysis: %d images merged; running %s", merged, " ".join(argv[1:]))
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    if done.returncode:
        raise RuntimeError(f"reanalyze failed: {done.stderr[-3000:]}")
    job = ast.literal_eval(done.stderr.rsplit("done: ", 1)[1].splitlines()[0])
    after = Archive.current(load_config(toml)).table.search().select(["revision"]).limit(None)
    ratio = job["images_per_s"] / device["images_per_s"]
    log.info("reanalysis: %s img/s, %.3f of the device's", job["images_per_s"], ratio)
    return {
        "images": merged,
        "job": job,
        "wall_s": round(wall, 1),
        "revisions": sorted(set(after.to_arrow()["revision"].to_pylist())),
        "images_per_s": job["images_per_s"],
        "over_device": round(ratio, 3),
        "wall_images_per_s": round(merged / wall, 2),
        "wall_over_device": round(merged / wall / device["images_per_s"], 3),
    }


# -- main -------------------------------------------------------------------------------------
def with_services(
    args: argparse.Namespace,
    work: Path,
    pool: list[Analysis],
    images: list[bytes],
    bundle: Bundle,
    out: dict[str, Any],
) -> None:
    """Parts 1 and 3: a mosquitto and moto's S3 server (a thread here) for their time only."""
    broker, moto, parts = Broker(work / "broker").start(), None, out["part_seconds"]
    try:
        moto = Moto().start()
        t0 = time.monotonic()
        if "ingest" not in args.skip:
            devices = [f"ward-{i:02d}" for i in range(args.devices)]
            msgs = make_events(pool, bundle, args.events, devices, "bench-devices")
            out["ingest"] = {
                "events": len(msgs),
                "devices": len(devices),
                "event_bytes_mean": round(float(np.mean([len(p) for _, p in msgs]))),
                "batch_events": 256,
                "batch_seconds": 2.0,
                "store": "moto (in memory)",
                "runs": [
                    ingest(w, msgs, broker.port, moto, work, vector_dims(bundle))
                    for w in args.workers
                ],
            }
            parts["ingest"], t0 = round(time.monotonic() - t0, 1), time.monotonic()
        if "reanalysis" not in args.skip:
            out["reanalysis"] = reanalysis(
                pool, images, bundle, moto, work, out["device_analysis"], args.size
            )
            parts["reanalysis"] = round(time.monotonic() - t0, 1)
    finally:
        if moto is not None:
            moto.stop()
        broker.stop()


def search_part(
    args: argparse.Namespace, work: Path, pool: list[Analysis], bundle: Bundle, out: dict[str, Any]
) -> None:
    base, devices = pool_rows(pool, bundle), [f"ward-{i:02d}" for i in range(args.devices)]
    sizes = {str(n): search_size(n, work, base, devices, bundle, args.queries) for n in args.sizes}
    first = sizes[str(args.sizes[0])]["modes"]
    for got in sizes.values():
        got["p50_over_smallest"] = {
            m: round(got["modes"][m]["p50_ms"] / first[m]["p50_ms"], 2) for m in MODES
        }
    out["search"] = {
        "store": "local filesystem (moto's in-memory S3 is no fair store at 1M rows)",
        "sizes": sizes,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[2000], help="search table rows")
    p.add_argument("--queries", type=int, default=100, help="searches per mode and size")
    p.add_argument("--events", type=int, default=1000, help="MQTT events ingested per run")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="ingest workers")
    p.add_argument("--images", type=int, default=100, help="real images analysed (the pool)")
    p.add_argument("--size", type=int, default=512, help="side of the camera-like JPEGs")
    p.add_argument("--devices", type=int, default=20, help="device ids in events and rows")
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="parts: ingest, search, reanalysis",
        choices=["ingest", "search", "reanalysis"],
    )
    p.add_argument("--work", type=Path, help="where tables go (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's line per request
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `finally`s stop what we started
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-", dir=args.work))
    bundle = load_bundle(BUNDLE)
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "bundle": bundle.version,
        "args": {k: str(v) for k, v in vars(args).items()},
        "part_seconds": {},
    }
    try:
        t0 = time.monotonic()
        images = camera_jpegs("chest", args.images, args.size, work)
        out["device_analysis"], pool = device_rate(bundle, images)
        out["part_seconds"]["pool_and_device_rate"] = round(time.monotonic() - t0, 1)
        log.info("device: %s", out["device_analysis"])
        if not {"ingest", "reanalysis"} <= set(args.skip):
            with_services(args, work, pool, images, bundle, out)
        if "search" not in args.skip:
            t0 = time.monotonic()
            search_part(args, work, pool, bundle, out)
            out["part_seconds"]["search"] = round(time.monotonic() - t0, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

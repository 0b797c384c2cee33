"""The data bench/fleet.py feeds the fleet: analyses of camera-like phantoms made once, then
spread as device events and as archive rows under new ids, devices, times and noise."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from cloud_sync import keys
from edge.analysis import views
from edge.analysis.analyser import Analyser
from edge.analysis.bundle import Bundle
from edge.config import ModelConfig
from edge.ingest.imaging import decode, preprocess
from edge.sinks.mqtt import events
from edge.store.records import Analysis, Record
from fleet.archive import row, schema, vector_dims

MAX_BYTES = 64 * 2**20


def device_rate(bundle: Bundle, images: list[bytes]) -> tuple[dict[str, Any], list[Analysis]]:
    """What `fleet.reanalyze.Analyse.one` does to an image minus S3 and the row (decode,
    preprocess, the same `Analyser` with 1 thread), in one process: the device's rate."""
    analyser = Analyser(bundle, ModelConfig(threads=1))
    spec = bundle.doc.preprocessing.model_dump()
    analyser.analyse(preprocess(decode(images[0], MAX_BYTES).image, spec))  # warm-up
    out, models, t0 = [], 0.0, time.perf_counter()
    for data in images:
        x = preprocess(decode(data, MAX_BYTES).image, spec)
        t1 = time.perf_counter()
        out.append(analyser.analyse(x))
        models += time.perf_counter() - t1
    total = time.perf_counter() - t0
    return {
        "images": len(images),
        "threads": 1,
        "seconds": round(total, 3),
        "images_per_s": round(len(images) / total, 2),
        "models_only_images_per_s": round(len(images) / models, 2),
    }, out


def record(a: Analysis, bundle: Bundle, device: str, rid: str, when: float, side: int) -> Record:
    return Record(
        seq=0,
        id=rid,
        device_id=device,
        source="folder",
        source_name=f"{rid[:12]}.jpg",
        captured_at=when,
        accepted_at=when + 1.0,
        ext="jpg",
        size=200_000,
        width=side,
        height=side,
        status="analysed",
        error=None,
        bundle=bundle.version,
        precision=bundle.precision,
        revision=1,
        accelerators=a.accelerators,
        timings=a.timings,
        analysis=a.outputs,
    )


def make_events(
    pool: list[Analysis], bundle: Bundle, n: int, devices: list[str], bucket: str
) -> list[tuple[str, bytes]]:
    """(topic, payload) of N events with distinct (device, id), as `edge.sinks.mqtt` sends them."""
    out, now = [], time.time()
    for i in range(n):
        a, dev = pool[i % len(pool)], devices[i % len(devices)]
        rec = record(a, bundle, dev, hashlib.sha256(b"event%d" % i).hexdigest(), now - i, 512)
        urls = events.urls(f"http://{dev}:8080", rec.id) | {
            "s3": f"s3://{bucket}/{keys.original_key('s3e', rec)}",
            "s3_thumbnail": f"s3://{bucket}/{keys.thumbnail_key('s3e', rec)}",
        }
        doc = views.event(rec, urls, None, views.vectors(a.blobs))
        out.append((f"s3e/{dev}/events", json.dumps(doc).encode()))
    return out


def pool_rows(pool: list[Analysis], bundle: Bundle) -> pa.RecordBatch:
    """The pool as the reconciler's rows (`fleet.archive.row` of each sidecar), the record's
    id and device left as placeholders for each generated row's own."""
    rows = []
    for a in pool:
        rec = record(a, bundle, "__DEVICE__", "__ID__", 0.0, 512)
        doc = views.sidecar(rec, "x.jpg", "x.thumb.jpg", views.vectors(a.blobs))
        rows.append(row(doc, "bench", sidecar_key="x/x.json"))
    return pa.RecordBatch.from_pylist(rows, schema=schema(*vector_dims(bundle)))


def fixed(values: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(
        pa.array(values.astype(np.float32).ravel()), values.shape[1]
    )


def batches(
    n: int, base: pa.RecordBatch, devices: list[str], size: int
) -> Iterator[pa.RecordBatch]:
    """N rows in batches of `size` (memory stays flat whatever N); seeded: every size holds
    the same first rows."""
    rng = np.random.default_rng(16)
    prof = np.stack(base["profile"].to_numpy(zero_copy_only=False))
    lat = np.stack(base["latent"].to_numpy(zero_copy_only=False))
    reg = np.stack([np.frombuffer(b, np.int8) for b in base["regions"].to_pylist()])
    reg = np.clip(
        reg[:, None].astype(np.int16) + rng.integers(-2, 3, (len(reg), 16, reg.shape[1])), -127, 127
    ).astype(np.int8)  # 16 noisy variants of each: noise per row is slow
    anomaly, records = base["anomaly"].to_numpy(), base["record"].to_pylist()
    start, now = np.datetime64("2026-01-01T00:00:00", "us"), np.datetime64("now", "us")
    for lo in range(0, n, size):
        m = min(size, n - lo)
        k = rng.integers(len(base), size=m)
        raw = rng.bytes(32 * m)
        ids = [raw[i : i + 32].hex() for i in range(0, 32 * m, 32)]
        devs = [devices[d] for d in rng.integers(len(devices), size=m)]
        when = start + rng.integers(0, 365 * 86400 * 10**6, size=m).astype("timedelta64[us]")
        days = np.char.replace(np.datetime_as_string(when, unit="D"), "-", "/")
        stems = [f"s3e/{d}/{day}/{i}" for d, day, i in zip(devs, days, ids, strict=True)]
        blobs, width = reg[k, rng.integers(16, size=m)], reg.shape[2]
        cols = {
            "device": pa.array(devs),
            "id": pa.array(ids),
            "captured_at": pa.array(when.astype(np.int64), pa.timestamp("us")),
            "source": pa.array(np.where(rng.random(m) < 0.8, "folder", "camera")),
            "anomaly": pa.array((anomaly[k] * rng.lognormal(0, 0.2, m)).astype(np.float32)),
            "original_key": pa.array([f"{x}.jpg" for x in stems]),
            "thumbnail_key": pa.array([f"{x}.thumb.jpg" for x in stems]),
            "profile": fixed(prof[k] + rng.normal(0, 0.02, prof[k].shape) * (prof[k] != 0)),
            "latent": fixed(lat[k] + rng.normal(0, 0.1, lat[k].shape)),
            "regions": pa.Array.from_buffers(
                pa.binary(),
                m,
                [
                    None,
                    pa.py_buffer(np.arange(0, (m + 1) * width, width, dtype=np.int32)),
                    pa.py_buffer(blobs),
                ],
            ),
            "record": pa.array(
                [
                    records[j].replace("__ID__", i).replace("__DEVICE__", d)
                    for j, i, d in zip(k, ids, devs, strict=True)
                ]
            ),
            "ingested_at": pa.array(np.full(m, now.astype(np.int64)), pa.timestamp("us")),
        }
        got = base.take(pa.array(k))
        yield pa.record_batch(
            [cols.get(f.name, got[f.name]) for f in base.schema], schema=base.schema
        )

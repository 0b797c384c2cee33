"""`s3e-fleet reanalyze --bundle B`: the whole archive through another bundle, with Ray Data.

The list of images comes from the table (not an S3 listing); each Ray worker holds a model
actor that loads the bundle once (TFLite, no TensorFlow), reads originals from S3, analyses
them exactly as a device would (`edge.analysis.analyser.Analyser`) and returns the rows of the next
revision. Rows are written through lance-ray into a new table, `<table>-<bundle name>`, a
chunk per commit; a killed job, run again, skips what that table holds. Once every image is
there, its indexes are built and the search is switched to it (`archive.current`). The same
command runs on a multi-node Ray cluster with `--address ray://head:10001`: the actors then
spread over its nodes, each reading S3 itself.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from lancedb.expr import col, lit
from tqdm import tqdm

from cloud_sync.client import make_client
from cloud_sync.config import S3Config
from edge.analysis import views
from edge.analysis.bundle import load_bundle
from edge.config import ModelConfig
from edge.store.records import Record
from fleet.archive import Archive, row, schema, storage_options, vector_dims
from fleet.config import FleetConfig
from fleet.maintain import ensure_indexes

log = logging.getLogger("s3e.fleet.reanalyze")
CHUNK = 512
SOURCE_COLUMNS = ["device", "id", "revision", "original_key", "thumbnail_key", "record"]


class Analyse:
    """A Ray actor: the bundle loaded once, S3 opened once; a batch of rows in, rows out."""

    def __init__(self, bundle: str, s3: str) -> None:
        from edge.analysis.analyser import Analyser

        self.bundle = load_bundle(bundle)
        self.analyser = Analyser(self.bundle, ModelConfig(threads=1))
        self.s3 = S3Config.model_validate_json(s3)
        self.client = make_client(self.s3)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for k in range(len(batch["id"])):
            r = self.one({c: batch[c][k] for c in SOURCE_COLUMNS})
            for key, value in r.items():
                out.setdefault(key, []).append(value)
        return out

    def one(self, src: dict[str, Any]) -> dict[str, Any]:
        from edge.ingest.imaging import decode, preprocess

        data = self.client.get_object(Bucket=self.s3.bucket, Key=src["original_key"])["Body"].read()
        x = preprocess(decode(data, 64 * 2**20).image, self.bundle.doc.preprocessing.model_dump())
        a = self.analyser.analyse(x)
        old = json.loads(src["record"])
        rec = Record(
            seq=0,
            id=src["id"],
            device_id=src["device"],
            source=old.get("source", ""),
            source_name=old.get("source_name", ""),
            accepted_at=_ts(old.get("accepted_at")),
            captured_at=_ts(old["captured_at"]),
            ext=src["original_key"].rsplit(".", 1)[-1],
            size=int(old.get("size", len(data))),
            width=int(old.get("width", 0)),
            height=int(old.get("height", 0)),
            status="analysed",
            error=None,
            bundle=self.bundle.version,
            precision=self.bundle.precision,
            revision=int(src["revision"]) + 1,
            accelerators=a.accelerators,
            timings=a.timings,
            analysis=a.outputs,
        )
        name = src["original_key"].rsplit("/", 1)[-1]
        thumb = (src["thumbnail_key"] or "").rsplit("/", 1)[-1]
        doc = views.sidecar(rec, name, thumb, views.vectors(a.blobs))
        out = row(doc, src["device"], self.s3.prefix)
        out["original_key"], out["thumbnail_key"] = src["original_key"], src["thumbnail_key"]
        return out


def _ts(value: str | None) -> float:
    if not value:
        return 0.0
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _todo(src: Archive, dst: Archive) -> tuple[list[dict[str, Any]], int]:
    """The source rows still to analyse, and how many an interrupted run of this job did.

    A destination row newer than its source row was written by that run; one as old or older
    is left from an earlier job into the same table (int8 -> float16 -> int8), and is deleted
    so the append does not duplicate it."""
    held = {
        (r["device"], r["id"]): r["revision"]
        for r in dst.table.search()
        .select(["device", "id", "revision"])
        .limit(None)
        .to_arrow()
        .to_pylist()
    }
    rows = src.table.search().select(SOURCE_COLUMNS).limit(None).to_arrow().to_pylist()
    done = {
        (r["device"], r["id"]) for r in rows if held.get((r["device"], r["id"]), -1) > r["revision"]
    }
    stale: dict[str, list[str]] = {}
    for device, image in held:
        if (device, image) not in done:
            stale.setdefault(device, []).append(image)
    for device, images in stale.items():  # typed filters: no value enters query text
        for at in range(0, len(images), 500):
            dst.table.delete((col("device") == lit(device)) & col("id").isin(images[at : at + 500]))
    todo = [r for r in rows if (r["device"], r["id"]) not in done and r["original_key"]]
    return todo, len(done)


def _chunks(rows: list[dict[str, Any]], n: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def reanalyze(
    cfg: FleetConfig,
    bundle_ref: str,
    address: str | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Every image of the current table through `bundle_ref`, into a new table; then the
    switch. Returns counts and the images/second."""
    import lance_ray
    import ray

    bundle = load_bundle(bundle_ref)
    src = Archive.current(cfg)
    name = f"{cfg.archive.table}-{bundle.name}"
    if name == src.name:
        raise ValueError(f"the archive already is {name}: nothing to re-analyse into")
    dst = Archive(cfg.archive.uri, name, cfg.s3, vector_dims(bundle))
    todo, done = _todo(src, dst)
    log.info(
        "re-analysing %d images with %s (%d already done) into %s",
        len(todo),
        bundle.version,
        done,
        name,
    )
    ray.init(
        address=address,
        ignore_reinit_error=True,
        log_to_driver=False,
        include_dashboard=False,
        num_cpus=None if address else workers,
    )
    uri = f"{cfg.archive.uri.rstrip('/')}/{name}.lance"
    opts = storage_options(cfg.s3) if uri.startswith("s3://") else None
    t0 = time.monotonic()
    bar = tqdm(total=len(todo), desc=f"reanalyze {bundle.name}", unit="img", disable=not progress)
    for chunk in _chunks(todo, CHUNK):
        ds = ray.data.from_items(chunk).map_batches(
            Analyse,
            fn_constructor_kwargs={"bundle": str(bundle.root), "s3": cfg.s3.model_dump_json()},
            batch_size=32,
            concurrency=workers,
            num_cpus=0.5,
        )
        lance_ray.write_lance(
            ds, uri, schema=schema(*vector_dims(bundle)), mode="append", storage_options=opts
        )
        bar.update(len(chunk))
        log.info("re-analysed %d of %d", bar.n, len(todo))
    bar.close()
    seconds = time.monotonic() - t0
    dst = Archive(cfg.archive.uri, name, cfg.s3, vector_dims(bundle))
    ensure_indexes(dst)
    Archive.switch(cfg, name)
    return {
        "table": name,
        "images": len(todo),
        "skipped": done,
        "rows": dst.count(),
        "seconds": round(seconds, 1),
        "images_per_s": round(len(todo) / seconds, 2) if seconds else None,
    }

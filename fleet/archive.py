"""The archive: one LanceDB table of every device's images, on S3.

A row is one image of one device, keyed by `(device, id)` (the id is the sha256 of the
original, so the same picture on two devices is two rows), holding what the device's event or
sidecar says (caption, labels, anomaly, out-of-domain, bundle, revision), the S3 keys of the
original and its thumbnail, the vectors the device computed (the word profile and int8 region
vectors of semantic search, the VAE latent), and the whole document as JSON. Writes are
`merge_insert` on the key keeping the higher revision, so redelivered and reconciled events
change nothing. The key fields carry Lance's primary-key metadata: without it, concurrent
merges of the same ids duplicate rows.

Lance commits need conditional PUT (`If-None-Match: *`); `check_conditional_put` finds a store
without it (OpenStack Swift answers 501) before anything is written, and says so.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa

from cloud_sync.client import make_client
from cloud_sync.config import S3Config

log = logging.getLogger("s3e.fleet")
PK = {"lance-schema:unenforced-primary-key": "true"}
MERGE_ATTEMPTS = 8


class ArchiveError(RuntimeError):
    """The archive cannot be used here; the message says why and what to do instead."""


def schema(profile_dim: int, latent_dim: int) -> pa.Schema:
    """The table's columns; the vector widths are the fleet bundle's (vocabulary, latent)."""
    return pa.schema(
        [
            pa.field("device", pa.string(), nullable=False, metadata=PK),
            pa.field("id", pa.string(), nullable=False, metadata=PK),
            pa.field("revision", pa.int32()),
            pa.field("captured_at", pa.timestamp("us")),
            pa.field("source", pa.string()),
            pa.field("caption", pa.string()),
            pa.field("text", pa.string()),
            pa.field("labels", pa.list_(pa.string())),
            pa.field("anomaly", pa.float32()),
            pa.field("out_of_domain", pa.bool_()),
            pa.field("bundle", pa.string()),
            pa.field("original_key", pa.string()),
            pa.field("thumbnail_key", pa.string()),
            pa.field("profile", pa.list_(pa.float32(), profile_dim)),
            pa.field("latent", pa.list_(pa.float32(), latent_dim)),
            pa.field("regions", pa.binary()),
            pa.field("record", pa.string()),
            pa.field("ingested_at", pa.timestamp("us")),
        ]
    )


def naive_utc(t: dt.datetime) -> dt.datetime:
    """Times are stored as UTC without a zone: converting a zoned Arrow timestamp to Python
    runs std::regex inside pyarrow, which crashes in a process whose C++ locale another
    native library has changed (as the device daemon's libraries do)."""
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _key_of(url: str | None, bucket: str) -> str:
    prefix = f"s3://{bucket}/"
    return url[len(prefix) :] if url and url.startswith(prefix) else ""


def row(doc: dict[str, Any], bucket: str, sidecar_key: str = "") -> dict[str, Any]:
    """A table row from a device's MQTT event, or from its S3 sidecar (`sidecar_key` given:
    the original and thumbnail lie beside it)."""
    vecs = doc.get("vectors") or {}
    if sidecar_key:
        folder = sidecar_key.rsplit("/", 1)[0]
        original = f"{folder}/{doc['original']}" if doc.get("original") else ""
        thumb = f"{folder}/{doc['thumbnail']}" if doc.get("thumbnail") else ""
    else:
        urls = doc.get("urls") or {}
        original, thumb = _key_of(urls.get("s3"), bucket), _key_of(urls.get("s3_thumbnail"), bucket)
    labels = [lab["name"] for lab in doc.get("labels", [])]
    record = {k: v for k, v in doc.items() if k not in ("vectors", "thumbnail_jpeg_base64")}
    return {
        "device": doc["device"],
        "id": doc["id"],
        "revision": int(doc.get("revision", 1)),
        "captured_at": naive_utc(dt.datetime.fromisoformat(doc["captured_at"])),
        "source": doc.get("source", ""),
        "caption": doc.get("caption", ""),
        "text": " ".join([doc.get("caption", ""), *labels]),
        "labels": labels,
        "anomaly": doc.get("anomaly"),
        "out_of_domain": bool(doc.get("out_of_domain", False)),
        "bundle": (doc.get("bundle") or {}).get("version", ""),
        "original_key": original,
        "thumbnail_key": thumb,
        "profile": vecs.get("profile"),
        "latent": vecs.get("latent"),
        "regions": base64.b64decode(vecs["regions_int8"]) if vecs.get("regions_int8") else None,
        "record": json.dumps(record, sort_keys=True),
        "ingested_at": naive_utc(dt.datetime.now(dt.UTC)),
    }


def storage_options(s3: S3Config) -> dict[str, str]:
    """Lance's object-store settings from the device's `[s3]` section (an empty key pair
    leaves the AWS_* environment and instance roles to Lance)."""
    out = {"region": s3.region}
    if s3.endpoint_url:
        out["endpoint"] = s3.endpoint_url
        out["allow_http"] = str(s3.endpoint_url.startswith("http://")).lower()
    if s3.access_key_id:
        out["aws_access_key_id"] = s3.access_key_id
        out["aws_secret_access_key"] = s3.secret_access_key.get_secret_value()
    return out


def check_conditional_put(s3: S3Config, uri: str) -> None:
    """Write a probe object twice with `If-None-Match: *`: the second must be refused (412).
    A server that does not know conditional writes cannot hold a Lance table safely."""
    if not uri.startswith("s3://"):
        return
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    client = make_client(s3)
    key = (
        f"{prefix.rstrip('/')}/_probe/{uuid.uuid4().hex}"
        if prefix
        else f"_probe/{uuid.uuid4().hex}"
    )
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"probe", IfNoneMatch="*")
        try:
            client.put_object(Bucket=bucket, Key=key, Body=b"probe", IfNoneMatch="*")
        except client.exceptions.ClientError as e:
            if e.response["Error"].get("Code") in ("PreconditionFailed", "412"):
                return
            raise
        why = "it overwrote an object a conditional PUT should have kept"
        raise ArchiveError(_NO_CAS.format(where=s3.endpoint_url or "AWS", why=why))
    except client.exceptions.ClientError as e:
        code = str(e.response["Error"].get("Code", ""))
        if code in ("NotImplemented", "501"):
            why = "it answers 501 NotImplemented to If-None-Match"
            raise ArchiveError(_NO_CAS.format(where=s3.endpoint_url or "AWS", why=why)) from None
        raise ArchiveError(f"archive {uri}: cannot write to the bucket ({code}: {e})") from None
    finally:
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except Exception:  # the probe is a few bytes; a refusal to delete is not the news
            log.debug("probe %s left behind", key)


_NO_CAS = (
    "the archive cannot live on {where}: {why}. LanceDB commits a table version with a "
    "conditional PUT (If-None-Match: *), so concurrent writers cannot overwrite each other; "
    "OpenStack Swift's S3 API (2.30) has none. Put archive.uri on AWS S3, MinIO, Ceph RGW or "
    "another server with conditional writes, or on a local folder for one writer (the "
    "devices may keep syncing to this server: the fleet only reads there)."
)


class Archive:
    """The table, opened, or created on first use with the fleet bundle's vector widths."""

    def __init__(
        self, uri: str, table: str, s3: S3Config, dims: tuple[int, int] | None = None
    ) -> None:
        self.uri, self.name, self.s3, self.dims = uri, table, s3, dims
        opts = storage_options(s3) if uri.startswith("s3://") else None
        self.db = lancedb.connect(uri, storage_options=opts)
        self._table: Any = None

    @property
    def table(self) -> Any:
        if self._table is None:
            if self.name in self.db.table_names():
                self._table = self.db.open_table(self.name)
                s = self._table.schema
                self.dims = (s.field("profile").type.list_size, s.field("latent").type.list_size)
            elif self.dims is None:
                raise ArchiveError(f"{self.uri}: no table {self.name!r} yet (nothing ingested)")
            else:
                self._table = self.db.create_table(
                    self.name, schema=schema(*self.dims), exist_ok=True
                )
        return self._table

    # -- which table is the archive: a re-analysis writes a new one, then switches -----------
    @classmethod
    def current(cls, cfg: Any, dims: tuple[int, int] | None = None) -> Archive:
        """The table searches and ingest use now (`archive.table` until a switch)."""
        a = cfg.archive
        return cls(a.uri, _read_pointer(cfg) or a.table, cfg.s3, dims)

    @staticmethod
    def switch(cfg: Any, table: str) -> None:
        """Make `table` the archive (one small object beside the tables)."""
        data = json.dumps({"table": table, "at": dt.datetime.now(dt.UTC).isoformat()}).encode()
        where = _pointer(cfg)
        if isinstance(where, tuple):
            make_client(cfg.s3).put_object(Bucket=where[0], Key=where[1], Body=data)
        else:
            where.parent.mkdir(parents=True, exist_ok=True)
            tmp = where.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(where)
        log.info("the archive is now table %s", table)

    def merge(self, rows: Iterable[dict[str, Any]]) -> int:
        """Insert new (device, id) rows, replace those of a lower or the same revision (the
        same content again, newly stamped: the reconciler then knows it has it); retried on
        a concurrent commit. Returns the rows offered."""
        batch = self.to_arrow(rows)
        if not batch.num_rows:
            return 0
        for attempt in range(MERGE_ATTEMPTS):
            try:
                (
                    self.table.merge_insert(["device", "id"])
                    .when_matched_update_all(where="target.revision <= source.revision")
                    .when_not_matched_insert_all()
                    .execute(batch)
                )
                return batch.num_rows
            except (OSError, RuntimeError, ValueError) as e:
                if "onflict" not in str(e) and "retry" not in str(e).lower():
                    raise
                time.sleep(0.05 * 2**attempt)
                self.table.checkout_latest()
        raise ArchiveError(f"{self.uri}: the merge kept conflicting with other writers")

    def to_arrow(self, rows: Iterable[dict[str, Any]]) -> pa.Table:
        """Rows as the table's schema; vectors of another width (another bundle) are nulled:
        such rows are found by keyword, not by meaning."""
        s = self.table.schema
        p, lat = self.dims or (0, 0)
        fixed = []
        for r in rows:
            r = dict(r)
            if r.get("profile") is not None and len(r["profile"]) != p:
                r["profile"], r["regions"] = None, None
            if r.get("latent") is not None and len(r["latent"]) != lat:
                r["latent"] = None
            fixed.append(r)
        return pa.Table.from_pylist(fixed, schema=s)

    def count(self) -> int:
        return int(self.table.count_rows())

    def ingested(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dt.datetime]:
        """When the table last took each (device, id) asked for that it holds."""
        ids = ",".join(f"'{i}'" for _, i in keys if plain_value(i))
        if not ids:
            return {}
        got = (
            self.table.search()
            .where(f"id IN ({ids})")
            .select(["device", "id", "ingested_at"])
            .limit(None)
            .to_arrow()
            .to_pylist()
        )
        return {(g["device"], g["id"]): utc(g["ingested_at"]) for g in got}


POINTER = "_current.json"


def _pointer(cfg: Any) -> tuple[str, str] | Path:
    uri = cfg.archive.uri.rstrip("/")
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        return bucket, f"{prefix}/{POINTER}" if prefix else POINTER
    return Path(uri) / POINTER


def _read_pointer(cfg: Any) -> str | None:
    where = _pointer(cfg)
    try:
        if isinstance(where, tuple):
            body = make_client(cfg.s3).get_object(Bucket=where[0], Key=where[1])["Body"].read()
        else:
            body = where.read_bytes()
    except FileNotFoundError:
        return None
    except Exception as e:  # NoSuchKey: never switched
        if "NoSuchKey" in str(e) or "404" in str(e):
            return None
        raise
    return str(json.loads(body)["table"])


def plain_value(value: str) -> bool:
    """An id fit to quote in a filter (hex sha256 digests, device names)."""
    return value.replace("-", "").replace("_", "").replace(".", "").isalnum()


def vector_dims(bundle: Any) -> tuple[int, int]:
    """(profile width, latent width) of a bundle: its vocabulary and its VAE's latent."""
    vocab = len(bundle.asset("embedder_words")["vocab"]) if "embedding" in bundle.doc.outputs else 1
    latent = int(bundle.settings("vae").get("latent_dim", 1)) if "vae" in bundle.doc.outputs else 1
    return vocab, latent

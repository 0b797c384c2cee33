"""The archive: one LanceDB table of every device's images, on S3.

A row is one image of one device, keyed by `(device, id)` (the id is the sha256 of the
original, so the same picture on two devices is two rows), holding what the device's event or
sidecar says (caption, labels, anomaly, out-of-domain, bundle, revision), the S3 keys of the
original and its thumbnail (rebuilt from device, capture day and id: never a payload's; see
`fleet.trust`), the vectors the device computed (the word profile and int8 region
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
from typing import Any, NamedTuple

import lancedb
import pyarrow as pa
from lancedb.expr import col

from cloud_sync.client import make_client
from cloud_sync.config import S3Config
from edge.search.engine import DICOM_FILTERS
from fleet.trust import (
    INVALID,
    WRONG_DEVICE,
    RefusedError,
    device_name_ok,
    extension,
    image_id_ok,
    object_keys,
)

log = logging.getLogger("s3e.fleet")
PK = {"lance-schema:unenforced-primary-key": "true"}
MERGE_ATTEMPTS = 8
HELD_CHUNK = 1000
"""Ids per `held()` query."""


class Held(NamedTuple):
    """What the table holds of one (device, id)."""

    revision: int
    ingested_at: dt.datetime


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
            *(pa.field(name, pa.string()) for name in DICOM_FILTERS),
        ]
    )


def naive_utc(t: dt.datetime) -> dt.datetime:
    """Times are stored as UTC without a zone: converting a zoned Arrow timestamp to Python
    runs std::regex inside pyarrow, which crashes in a process whose C++ locale another
    native library has changed (as the device daemon's libraries do)."""
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def row(
    doc: Any, device: str, prefix: str, original: object = "", thumbnail: bool = False
) -> dict[str, Any]:
    """A table row from a device's MQTT event or S3 sidecar, for `device`: the one its topic or
    its S3 key names, never the payload's (a payload naming another is refused). The original
    and thumbnail keys are rebuilt under the devices' `prefix` from device, capture day and id
    (`fleet.trust.object_keys`): `original` (the event's `urls.s3`, the sidecar's `original`)
    lends only its extension, and only one a device gives; `thumbnail` says whether the device
    synced one. Every field is checked for its type, so that no payload can make a batch
    unwritable. Raises `RefusedError`."""
    if not isinstance(doc, dict):
        raise RefusedError(INVALID, f"not a JSON object: {str(doc)[:60]!r}")
    if not device_name_ok(device):
        raise RefusedError(INVALID, f"not a device name: {device[:80]!r}")
    if doc.get("device") != device:
        raise RefusedError(WRONG_DEVICE, f"{device} sent {str(doc.get('device'))[:80]!r}")
    image = doc.get("id")
    if not image_id_ok(image):
        raise RefusedError(INVALID, f"{device}: not a sha256 id: {str(image)[:80]!r}")
    try:
        captured = dt.datetime.fromisoformat(_text(doc["captured_at"]))
        revision = doc.get("revision", 1)
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
            raise ValueError(f"revision {str(revision)[:20]!r}")
        vecs = doc.get("vectors") or {}
        labels = [_text(lab["name"]) for lab in doc.get("labels") or []]
        caption = _text(doc.get("caption") or "")
        regions = vecs.get("regions_int8")
        out = {
            "device": device,
            "id": image,
            "revision": revision,
            "captured_at": naive_utc(captured),
            "source": _text(doc.get("source") or ""),
            "caption": caption,
            "text": " ".join([caption, *labels]),
            "labels": labels,
            "anomaly": _number(doc.get("anomaly")),
            "out_of_domain": doc.get("out_of_domain") is True,
            "bundle": _text((doc.get("bundle") or {}).get("version") or ""),
            "original_key": "",
            "thumbnail_key": "",
            "profile": _numbers(vecs.get("profile")),
            "latent": _numbers(vecs.get("latent")),
            "regions": base64.b64decode(_text(regions), validate=True) if regions else None,
        }
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
        why = f"{image}:{device}: {type(e).__name__} {str(e)[:80]!r}"
        raise RefusedError(INVALID, why) from None
    out["original_key"], out["thumbnail_key"] = object_keys(
        prefix, device, captured, image, extension(original), thumbnail
    )
    record = {k: v for k, v in doc.items() if k not in ("vectors", "thumbnail_jpeg_base64")}
    out["record"] = json.dumps(record, sort_keys=True)
    out["ingested_at"] = naive_utc(dt.datetime.now(dt.UTC))  # the keys in the schema's order
    out.update(_dicom(doc.get("dicom"), f"{image}:{device}"))
    return out


def _dicom(attrs: object, who: str) -> dict[str, str | None]:
    """The DICOM attributes the fleet filters on, upper-cased as the device compares them."""
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        raise RefusedError(INVALID, f"{who}: dicom is a {type(attrs).__name__}")
    try:
        return {k: _text(attrs[k]).upper() if attrs.get(k) else None for k in DICOM_FILTERS}
    except (TypeError, ValueError) as e:
        raise RefusedError(INVALID, f"{who}: dicom: {type(e).__name__} {str(e)[:80]!r}") from None


def _text(value: object) -> str:
    """A string Arrow can write (no lone surrogates)."""
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__} where text belongs")
    value.encode()
    return value


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{type(value).__name__} where a number belongs")
    return float(value)


def _numbers(value: object) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise TypeError(f"{type(value).__name__} where a vector belongs")
    out = []
    for v in value:
        n = _number(v)
        if n is None:
            raise TypeError("null in a vector")
        out.append(n)
    return out


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
                self._add_missing_columns()
                s = self._table.schema
                self.dims = (s.field("profile").type.list_size, s.field("latent").type.list_size)
            elif self.dims is None:
                raise ArchiveError(f"{self.uri}: no table {self.name!r} yet (nothing ingested)")
            else:
                self._table = self.db.create_table(
                    self.name, schema=schema(*self.dims), exist_ok=True
                )
        return self._table

    def _add_missing_columns(self) -> None:
        """Columns of the schema that a table made before them lacks, added (null in its old
        rows); a writer beside this one that adds them first wins, and its table is read."""
        have = set(self._table.schema.names)
        missing = [f for f in schema(1, 1) if f.name not in have]
        if not missing:
            return
        try:
            self._table.add_columns(missing)
            log.info("archive %s: added columns %s", self.name, [f.name for f in missing])
        except Exception as e:  # a concurrent commit: the other writer added them
            log.info("archive %s: columns not added here (%s); reading again", self.name, e)
            self._table = self.db.open_table(self.name)

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

    def merge(self, rows: Iterable[dict[str, Any]] | pa.Table) -> int:
        """Insert new (device, id) rows, replace those of a lower or the same revision (the
        same content again, newly stamped: the reconciler then knows it has it); retried on
        a concurrent commit. At most one row per (device, id) (`fleet.trust.admit`). A missing
        or broken vector (an out-of-domain image has no word profile) is stored as null: LanceDB
        otherwise refuses the whole batch, and the events behind it would wait for ever.
        Returns the rows offered."""
        batch = rows if isinstance(rows, pa.Table) else self.to_arrow(rows)
        if not batch.num_rows:
            return 0
        for attempt in range(MERGE_ATTEMPTS):
            try:
                (
                    self.table.merge_insert(["device", "id"])
                    .when_matched_update_all(where="target.revision <= source.revision")
                    .when_not_matched_insert_all()
                    .execute(batch, on_bad_vectors="null")
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

    def writable(self, rows: list[dict[str, Any]]) -> tuple[pa.Table, list[dict[str, Any]]]:
        """The rows as the table's schema, and the rows Arrow cannot write (found one by one
        when the whole fails): one such row must not hold back the others for ever."""
        try:
            return self.to_arrow(rows), []
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            good, bad = [], []
            for r in rows:
                try:
                    self.to_arrow([r])
                    good.append(r)
                except (pa.ArrowException, ValueError, TypeError, OverflowError):
                    bad.append(r)
            return self.to_arrow(good), bad

    def count(self) -> int:
        return int(self.table.count_rows())

    def held(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Held]:
        """The revision and last ingestion of each (device, id) asked for that the table
        holds, as of the latest commit of any writer. The ids go in a typed filter
        (`lancedb.expr`), never into query text."""
        wanted = {(d, i) for d, i in keys if device_name_ok(d) and image_id_ok(i)}
        ids = sorted({i for _, i in wanted})
        out = {}
        if ids:
            self.table.checkout_latest()
        for at in range(0, len(ids), HELD_CHUNK):
            got = (
                self.table.search()
                .where(col("id").isin(ids[at : at + HELD_CHUNK]))
                .select(["device", "id", "revision", "ingested_at"])
                .limit(None)
                .to_arrow()
                .to_pylist()
            )
            for g in got:
                key = (g["device"], g["id"])
                if key in wanted:
                    out[key] = Held(int(g["revision"] or 1), utc(g["ingested_at"]))
        return out


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


def vector_dims(bundle: Any) -> tuple[int, int]:
    """(profile width, latent width) of a bundle: its vocabulary, and its VAE's latent or its
    classifier's pooled features (the vector "similar images" compares)."""
    outputs = bundle.doc.outputs
    vocab = len(bundle.asset("embedder_words")["vocab"]) if "embedding" in outputs else 1
    if "vae" in outputs:
        return vocab, int(bundle.settings("vae").get("latent_dim", 1))
    if "classify" in outputs:
        outs = bundle.doc.models["classifier"].outputs
        return vocab, next((int(t.shape[-1]) for t in outs if t.name == "features"), 1)
    return vocab, 1

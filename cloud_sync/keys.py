"""Where a record lives in the bucket, and the sidecar that makes a bucket searchable alone.

`<prefix>/<device>/<yyyy>/<mm>/<dd>/<sha256>.<ext>`, dated by capture time in UTC: the id is
the sha256 of the original, so a key names its content, and a fleet's devices never collide.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from edge.events import iso
from edge.store import Record

SIDECAR_VERSION = 1


def base_key(prefix: str, rec: Record) -> str:
    """The key without its extension: the original adds `.<ext>`, the sidecar `.json`."""
    day = dt.datetime.fromtimestamp(rec.captured_at, tz=dt.UTC).strftime("%Y/%m/%d")
    return "/".join(p for p in (prefix, rec.device_id, day, rec.id) if p)


def original_key(prefix: str, rec: Record) -> str:
    return f"{base_key(prefix, rec)}.{rec.ext}"


def sidecar_key(prefix: str, rec: Record) -> str:
    return f"{base_key(prefix, rec)}.json"


def device_prefix(prefix: str, device_id: str) -> str:
    """Everything one device writes lies under this (stale multipart uploads are looked for
    here, and only here: other devices' uploads are theirs)."""
    return f"{prefix}/{device_id}/" if prefix else f"{device_id}/"


def sidecar(rec: Record, key: str) -> bytes:
    """The record as JSON, beside its original. Deterministic for a given record, so sending
    it again writes the same bytes (and its MD5 tells whether it changed)."""
    doc: dict[str, Any] = {
        "sidecar_version": SIDECAR_VERSION,
        "id": rec.id,
        "device": rec.device_id,
        "original": key.rsplit("/", 1)[-1],
        "size": rec.size,
        "width": rec.width,
        "height": rec.height,
        "source": rec.source,
        "source_name": rec.source_name,
        "captured_at": iso(rec.captured_at),
        "caption": rec.caption,
        "labels": rec.labels,
        "segments": rec.segments,
        "anomaly": rec.anomaly,
        "out_of_domain": rec.out_of_domain,
        "ood_score": rec.ood_score,
        "bundle": rec.bundle,
        "precision": rec.precision,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

"""Where a record lives in the bucket, and the sidecar that makes a bucket searchable alone.

`<prefix>/<device>/<yyyy>/<mm>/<dd>/<sha256>.<ext>`, dated by capture time in UTC: the id is
the sha256 of the original, so a key names its content, and a fleet's devices never collide.
"""

from __future__ import annotations

import datetime as dt
import json

from edge.analysis import views
from edge.store.records import Record

THUMBNAIL_SUFFIX = ".thumb.jpg"


def base_key(prefix: str, rec: Record) -> str:
    """The key without its extension: the original adds `.<ext>`, the sidecar `.json`."""
    return image_base_key(prefix, rec.device_id, rec.captured_at, rec.id)


def image_base_key(prefix: str, device: str, captured_at: float, image: str) -> str:
    """`base_key` from its parts (the fleet rebuilds a device's keys from an event's)."""
    day = dt.datetime.fromtimestamp(captured_at, tz=dt.UTC).strftime("%Y/%m/%d")
    return "/".join(p for p in (prefix, device, day, image) if p)


def original_key(prefix: str, rec: Record) -> str:
    return f"{base_key(prefix, rec)}.{rec.ext}"


def sidecar_key(prefix: str, rec: Record) -> str:
    return f"{base_key(prefix, rec)}.json"


def thumbnail_key(prefix: str, rec: Record) -> str:
    """The thumbnail beside the original: a fleet's page shows results without originals."""
    return f"{base_key(prefix, rec)}{THUMBNAIL_SUFFIX}"


def device_prefix(prefix: str, device_id: str) -> str:
    """Everything one device writes lies under this (stale multipart uploads are looked for
    here, and only here: other devices' uploads are theirs)."""
    return f"{prefix}/{device_id}/" if prefix else f"{device_id}/"


def sidecar(
    rec: Record, key: str, thumbnail: str = "", blobs: dict[str, bytes] | None = None
) -> bytes:
    """The record as JSON (`edge.analysis.views.sidecar`, with its vectors), beside its original:
    written again at each revision. Deterministic for a given record revision, so resending
    it changes nothing."""
    name = key.rsplit("/", 1)[-1]
    doc = views.sidecar(rec, name, thumbnail.rsplit("/", 1)[-1], views.vectors(blobs or {}))
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

"""The reconciler: what MQTT missed (a device offline for a week, a broker outage), from the
sidecars the devices sync to S3.

Each pass lists the bucket by date prefix (`<prefix>/<device>/<yyyy>/<mm>/<dd>/`, the last
`days` days of every device) and merges each sidecar the table lacks, or holds older than
the object (a re-analysis rewrote it). Idempotent: a pass over what is already there reads
listings only.

A sidecar is held to the rules of an event (`fleet.trust`): its device is the one its key
names, a sidecar naming another device, or another id than its file name, is refused, its
original and thumbnail keys are rebuilt from device, capture day and id, and a revision its
device cannot have reached is refused. Refusals are counted and logged one line per burst.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from fleet.archive import Archive, row
from fleet.trust import (
    INVALID,
    Refusals,
    RefusedError,
    admit,
    device_name_ok,
    image_id_ok,
    key_device,
)

log = logging.getLogger("s3e.fleet.reconcile")
CHUNK = 500


def _list(client: Any, bucket: str, prefix: str, delimiter: str = "") -> list[dict[str, Any]]:
    out, token = [], None
    while True:
        kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if delimiter:
            kw["Delimiter"] = delimiter
        if token:
            kw["ContinuationToken"] = token
        page = client.list_objects_v2(**kw)
        out += page.get("CommonPrefixes", []) if delimiter else page.get("Contents", [])
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]


def sidecars(client: Any, bucket: str, prefix: str, days: int) -> list[tuple[str, str, Any]]:
    """(device, sidecar key, last modified) of the last `days` days, every device: folders
    that are no device name, and objects that are no `<sha256>.json`, are passed over."""
    top = f"{prefix.strip('/')}/" if prefix else ""
    folders = [p["Prefix"][len(top) :].strip("/") for p in _list(client, bucket, top, "/")]
    today = dt.datetime.now(dt.UTC).date()
    out = []
    for device in filter(device_name_ok, folders):
        for back in range(days):
            day = (today - dt.timedelta(days=back)).strftime("%Y/%m/%d")
            for obj in _list(client, bucket, f"{top}{device}/{day}/"):
                key = obj["Key"]
                if image_id_ok(_stem(key)):
                    out.append((device, key, obj["LastModified"]))
    return out


def _stem(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return name.removesuffix(".json") if name.endswith(".json") else ""


def sidecar_row(doc: Any, key: str, prefix: str) -> dict[str, Any]:
    """The row of the sidecar at `key`, for the device its key names; raises RefusedError."""
    device = key_device(key, prefix)
    if device is None:
        raise RefusedError(INVALID, f"not under a device's folder: {key[:120]!r}")
    if isinstance(doc, dict) and doc.get("id") != _stem(key):
        raise RefusedError(INVALID, f"{key}: names another id, {str(doc.get('id'))[:80]!r}")
    original = doc.get("original") if isinstance(doc, dict) else ""
    thumbnail = bool(doc.get("thumbnail")) if isinstance(doc, dict) else False
    return row(doc, device, prefix, original, thumbnail)


def reconcile(
    archive: Archive,
    client: Any,
    bucket: str,
    prefix: str,
    days: int,
    refusals: Refusals | None = None,
) -> int:
    """One pass; returns how many sidecars were merged. Refusals are counted in
    `refusals` (a pass of its own when not given)."""
    refusals = refusals or Refusals(log)
    found = sidecars(client, bucket, prefix, days)
    merged = 0
    for i in range(0, len(found), CHUNK):
        part = found[i : i + CHUNK]
        held = archive.held([(d, _stem(k)) for d, k, _ in part])
        rows, refused = [], []
        for device, key, modified in part:
            if (device, _stem(key)) in held and held[device, _stem(key)].ingested_at >= modified:
                continue
            try:
                doc = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            except (ValueError, RecursionError) as e:
                refused.append(RefusedError(INVALID, f"{key}: not JSON ({e})"))
                continue
            try:
                rows.append(sidecar_row(doc, key, prefix))
            except RefusedError as e:
                refused.append(e)
        rows, jumps = admit(rows, {k: h.revision for k, h in held.items()})
        table, unwritable = archive.writable(rows)
        merged += archive.merge(table)
        bad = [RefusedError(INVALID, f"{r['id']}:{r['device']}: unwritable") for r in unwritable]
        for no in [*refused, *jumps, *bad]:
            refusals.refuse(no.reason, no.detail)
    refusals.flush()
    if merged:
        log.info("reconciled %d sidecars the table lacked", merged)
    return merged

"""The reconciler: what MQTT missed (a device offline for a week, a broker outage), from the
sidecars the devices sync to S3.

Each pass lists the bucket by date prefix (`<prefix>/<device>/<yyyy>/<mm>/<dd>/`, the last
`days` days of every device) and merges each sidecar the table lacks, or holds older than
the object (a re-analysis rewrote it). Idempotent: a pass over what is already there reads
listings only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from fleet.archive import Archive, row

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
    """(device, sidecar key, last modified) of the last `days` days, every device."""
    top = f"{prefix.strip('/')}/" if prefix else ""
    devices = [p["Prefix"][len(top) :].strip("/") for p in _list(client, bucket, top, "/")]
    today = dt.datetime.now(dt.UTC).date()
    out = []
    for device in devices:
        for back in range(days):
            day = (today - dt.timedelta(days=back)).strftime("%Y/%m/%d")
            for obj in _list(client, bucket, f"{top}{device}/{day}/"):
                key = obj["Key"]
                if key.endswith(".json"):
                    out.append((device, key, obj["LastModified"]))
    return out


def reconcile(archive: Archive, client: Any, bucket: str, prefix: str, days: int) -> int:
    """One pass; returns how many sidecars were merged."""
    found = sidecars(client, bucket, prefix, days)
    merged = 0
    for i in range(0, len(found), CHUNK):
        part = found[i : i + CHUNK]
        keys = [(d, k.rsplit("/", 1)[-1].removesuffix(".json")) for d, k, _ in part]
        held = archive.ingested(keys)
        rows = []
        for (_, key, modified), k in zip(part, keys, strict=True):
            if k not in held or held[k] < modified:
                doc = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
                rows.append(row(doc, bucket, sidecar_key=key))
        merged += archive.merge(rows)
    if merged:
        log.info("reconciled %d sidecars the table lacked", merged)
    return merged

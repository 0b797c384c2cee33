"""What the fleet believes of a device's event or sidecar, and what it refuses.

A payload is the device's word about its image (caption, labels, vectors, revision), never
about who the device is nor where anything lies. The device is the one the MQTT topic names
(the broker's ACL lets a device publish under its own name only: `fleet.broker`) or, for a
sidecar, the one its S3 key names. The S3 keys of a row are rebuilt from that device, the
capture day and the id, with the device's own `cloud_sync.keys`, and presigned
only while they still have that form. A revision counts analyses, so one far above what the
archive holds is refused rather than allowed to pin a row.

Refusals are counted by reason and logged one line per burst (`Refusals`): a flood of forged
events costs a few lines, and a lone one is still seen.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

from cloud_sync.keys import THUMBNAIL_SUFFIX, image_base_key
from edge.ingest.imaging import MEDIA_TYPES

DEVICE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
"""A device's `device_id`, as the device's own config allows it."""
IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")
"""The sha256 of the original, in hex, as the device names it."""
EXTENSIONS = frozenset(MEDIA_TYPES)
"""The extensions a device gives the originals it accepts."""

REVISION_STEP = 8
"""How far above the archive's revision of an image an event or sidecar may go. A revision
counts analyses: 1 for the first, one more per re-analysis, and a device re-analyses only when
its bundle changes, all its images at once. The fleet misses revisions only while the broker
or the fleet is away, and then the reconciler brings the latest; eight bundle changes unseen
in that time is beyond a device's life, while a forged revision meant to pin a row against
the device's later ones is refused. A first revision counts from 0 (no row yet)."""
MAX_REVISION = 1024
"""The ceiling, whatever the archive holds: stepping up a few revisions at a time cannot pin
a row either, and the revision always fits the table's int32 column."""

INVALID = "invalid"
WRONG_DEVICE = "wrong_device"
REVISION = "revision_jump"
FOREIGN_KEY = "foreign_key"
WHY = {
    INVALID: "not an event of a device",
    WRONG_DEVICE: "the payload names another device than its topic or its S3 key",
    REVISION: "a revision above what its device can have sent",
    FOREIGN_KEY: "an S3 key that is not its image's own, not presigned",
}


class RefusedError(ValueError):
    """A payload the archive does not take; `reason` is one of `WHY`'s keys."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{WHY[reason]}: {detail}")
        self.reason, self.detail = reason, detail


def device_name_ok(name: object) -> TypeGuard[str]:
    """A device name: the device's own pattern, and not `.` or `..` (a key segment that an
    HTTP client may fold away)."""
    return isinstance(name, str) and bool(DEVICE_NAME.fullmatch(name)) and name.strip(".") != ""


def image_id_ok(image: object) -> TypeGuard[str]:
    return isinstance(image, str) and bool(IMAGE_ID.fullmatch(image))


def topic_device(topic: str, topic_prefix: str) -> str | None:
    """The device an events topic names (`<prefix>/<device>/events`), or None."""
    head = f"{topic_prefix.rstrip('/')}/"
    if not (topic.startswith(head) and topic.endswith("/events")):
        return None
    device = topic[len(head) : -len("/events")]
    return device if device_name_ok(device) else None


def key_device(key: str, prefix: str) -> str | None:
    """The device an object key names (`<prefix>/<device>/...`), or None."""
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    if not key.startswith(head):
        return None
    device = key[len(head) :].split("/", 1)[0]
    return device if device_name_ok(device) else None


def extension(name: object) -> str:
    """The extension of an original's name or URL if a device can have given it, else ""."""
    if not isinstance(name, str):
        return ""
    stem, dot, ext = name.rsplit("/", 1)[-1].rpartition(".")
    return ext if dot and stem and ext in EXTENSIONS else ""


def object_keys(
    prefix: str, device: str, captured: dt.datetime, image: str, ext: str, thumbnail: bool
) -> tuple[str, str]:
    """(original key, thumbnail key) of an image; "" for one the device did not sync or an
    extension it never gives."""
    when = captured if captured.tzinfo else captured.replace(tzinfo=dt.UTC)
    base = image_base_key(prefix, device, when.timestamp(), image)
    return (
        f"{base}.{ext}" if ext in EXTENSIONS else "",
        f"{base}{THUMBNAIL_SUFFIX}" if thumbnail else "",
    )


def object_key_ok(key: object, prefix: str, device: str, image: str, thumbnail: bool) -> bool:
    """Whether `key` is the original (or with `thumbnail`, the thumbnail) key of `image` of
    `device` under the devices' prefix, with a real date: the only keys the fleet presigns."""
    if not (isinstance(key, str) and device_name_ok(device) and image_id_ok(image)):
        return False
    head = f"{prefix}/{device}/" if prefix else f"{device}/"
    m = re.fullmatch(r"(\d{4})/(\d{2})/(\d{2})/([0-9a-f]{64})(\..+)", key.removeprefix(head))
    if not key.startswith(head) or m is None or m[4] != image:
        return False
    if (m[5] == THUMBNAIL_SUFFIX) != thumbnail or not (thumbnail or m[5][1:] in EXTENSIONS):
        return False
    try:
        dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return False
    return True


def revision_ok(revision: int, held: int | None) -> bool:
    """Whether a device can have sent `revision` of an image the archive holds at `held`
    (None: no row yet); see `REVISION_STEP` and `MAX_REVISION`."""
    return 1 <= revision <= min(MAX_REVISION, (held or 0) + REVISION_STEP)


Key = tuple[str, str]


def above_step(rows: Iterable[dict[str, Any]]) -> list[Key]:
    """The (device, id) of the rows whose revision needs the archive's to be judged: one up
    to `REVISION_STEP` is fine whatever the archive holds, so most events cost no read."""
    return [(r["device"], r["id"]) for r in rows if r["revision"] > REVISION_STEP]


def admit(
    rows: Iterable[dict[str, Any]], held: dict[Key, int]
) -> tuple[list[dict[str, Any]], list[RefusedError]]:
    """The rows to merge and the refusals: a revision jump is refused; of several rows of one
    (device, id), the highest revision is kept (a merge takes one source row per key)."""
    best: dict[Key, dict[str, Any]] = {}
    refused = []
    for r in rows:
        key = (r["device"], r["id"])
        if not revision_ok(r["revision"], held.get(key)):
            why = f"{r['id']}:{r['device']} revision {r['revision']} (held: {held.get(key)})"
            refused.append(RefusedError(REVISION, why))
            continue
        if key not in best or best[key]["revision"] <= r["revision"]:
            best[key] = r
    return list(best.values()), refused


@dataclass
class _Burst:
    first: float
    last: float
    reported: float
    more: int = 0


class Refusals:
    """Refusals counted by reason, and logged one line per burst: the first of a reason with
    its detail, then only a count, summed up in one line once the reason has been quiet for
    `quiet_s` (and every `quiet_s` while a burst goes on)."""

    def __init__(
        self,
        logger: logging.Logger,
        quiet_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log, self.quiet_s, self.clock = logger, quiet_s, clock
        self.counts: dict[str, int] = {}
        self._bursts: dict[str, _Burst] = {}

    def refuse(self, reason: str, detail: str) -> None:
        self.flush()
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = self.clock()
        burst = self._bursts.get(reason)
        if burst is None:
            self._bursts[reason] = _Burst(now, now, now)
            self.log.warning(
                "refused, %s: %s (more of these are counted and summed up when they stop)",
                WHY.get(reason, reason),
                detail,
            )
        else:
            burst.more += 1
            burst.last = now

    def flush(self) -> None:
        """Sum up the bursts that have ended, and those still going on for `quiet_s`."""
        now = self.clock()
        for reason, burst in list(self._bursts.items()):
            ended = now - burst.last >= self.quiet_s
            if burst.more and (ended or now - burst.reported >= self.quiet_s):
                self.log.warning(
                    "refused %d more in %.0f s, %s",
                    burst.more,
                    now - burst.reported,
                    WHY.get(reason, reason),
                )
                burst.more, burst.reported = 0, now
            if ended:
                del self._bursts[reason]

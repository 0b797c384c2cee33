"""The typed contracts of the store: what an analysis produces, and a record as read back.

A record's analysis is one JSON object per output plug-in (`edge.analysis.outputs`), keyed by the
output's key; large binary data (attention maps, vectors) lives beside it as named blobs.
`revision` counts analyses: 1 for the first, one more for each re-analysis, so every sink can
tell a corrected record from one it already has.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Analysis:
    """What one bundle's outputs said about one image."""

    outputs: dict[str, dict[str, Any]]
    """Output key -> its fields (JSON)."""
    blobs: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    """Derived file suffix (e.g. "mask.png") -> bytes."""
    timings: dict[str, float] = field(default_factory=dict)
    """Milliseconds per stage."""
    accelerators: dict[str, str] = field(default_factory=dict)
    bundle: str = ""
    """The version of the bundle that made it, where a device routes an image between
    several (`edge.analysis.analyser.Router`)."""


@dataclass
class Record:
    """One image's row, as sinks and the API see it."""

    seq: int
    id: str
    device_id: str
    source: str
    source_name: str
    captured_at: float
    accepted_at: float
    ext: str
    size: int
    width: int
    height: int
    status: str
    error: str | None
    bundle: str | None
    """`<name>@<hash>` of the bundle whose analysis this is."""
    precision: str | None
    revision: int
    accelerators: dict[str, str]
    timings: dict[str, float]
    analysis: dict[str, dict[str, Any]]
    evicted_at: float | None = None
    """When the original was deleted locally (synced, then over the quota)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """What the file itself said: `dicom`, a DICOM's attributes a user filters on."""

    def output(self, key: str) -> dict[str, Any] | None:
        return self.analysis.get(key)


COLUMNS = (
    "seq, id, device_id, source, source_name, captured_at, accepted_at, ext, size, width, "
    "height, status, error, bundle, precision, revision, accelerators, timings, analysis, "
    "evicted_at, meta"
)
"""The records table's columns, in the order a `Record` is read from."""


def prefixed(alias: str) -> str:
    """The record columns, each as `alias.column`, for a join."""
    return ", ".join(f"{alias}.{c.strip()}" for c in COLUMNS.split(","))


def from_row(r: sqlite3.Row) -> Record:
    """A record as read from its row (JSON columns decoded)."""

    def js(key: str, empty: Any) -> Any:
        return json.loads(r[key]) if r[key] else empty

    return Record(
        seq=r["seq"],
        id=r["id"],
        device_id=r["device_id"],
        source=r["source"],
        source_name=r["source_name"],
        captured_at=r["captured_at"],
        accepted_at=r["accepted_at"],
        ext=r["ext"],
        size=r["size"],
        width=r["width"],
        height=r["height"],
        status=r["status"],
        error=r["error"],
        bundle=r["bundle"],
        precision=r["precision"],
        revision=r["revision"],
        accelerators=js("accelerators", {}),
        timings=js("timings", {}),
        analysis=js("analysis", {}),
        evicted_at=r["evicted_at"],
        meta=js("meta", {}),
    )

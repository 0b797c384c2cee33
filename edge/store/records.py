"""The typed contracts of the store: what an analysis produces, and a record as read back.

A record's analysis is one JSON object per output plug-in (`edge.analysis.outputs`), keyed by the
output's key; large binary data (attention maps, vectors) lives beside it as named blobs.
`revision` counts analyses: 1 for the first, one more for each re-analysis, so every sink can
tell a corrected record from one it already has.
"""

from __future__ import annotations

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

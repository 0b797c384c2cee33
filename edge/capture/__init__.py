"""Capture sources: plug-ins that hand image bytes to the ingestor.

Each source is one small module with one class, registered in `SOURCES` under its config key
(`[capture.<key>]`). `upload` is not a thread but a route of the HTTP endpoint (`edge.api.app`).
A source whose optional dependency is missing (OpenCV for `camera`) fails only when enabled,
with a message saying what to install.
"""

from __future__ import annotations

from typing import Any

from edge.capture.base import CaptureSource, Ingest, Reject
from edge.capture.camera import CameraSource
from edge.capture.folder import FolderSource
from edge.config import EdgeConfig

SOURCES: dict[str, Any] = {s.key: s for s in (FolderSource, CameraSource)}


def enabled_sources(cfg: EdgeConfig, ingestor: Ingest, reject: Reject) -> list[CaptureSource]:
    """The sources the config turns on (`[capture.<key>]`), built but not started."""
    out: list[CaptureSource] = []
    for key, cls in SOURCES.items():
        section = getattr(cfg.capture, key)
        if cls.enabled(section):
            out.append(cls(section, ingestor, reject))
    return out


__all__ = ["SOURCES", "CaptureSource", "enabled_sources"]

"""Capture sources: plug-ins that hand image bytes to the ingestor.

Each source is one small module with one class (its config model beside it, as `Config`),
found through `sources()`: the built-in ones, the `s3e.capture` entry points, and any
registered at run time; `[capture.<key>]` is its section. `upload` is not a thread but a route
of the HTTP endpoint (`edge.api.routes.uploads`). A source whose optional dependency is
missing (OpenCV for `camera`) fails only when enabled, with a message saying what to install.
"""

from __future__ import annotations

import logging
from importlib import metadata

from edge.capture.base import CaptureSource, Ingest, Reject, SourceType
from edge.capture.camera import CameraSource
from edge.capture.folder import FolderSource
from edge.config import (
    CAPTURE_ENTRY_POINTS,
    EdgeConfig,
    register_section,
    unregister_section,
)

log = logging.getLogger("s3e.capture")
BUILT_IN: tuple[SourceType, ...] = (FolderSource, CameraSource)
_registered: dict[str, SourceType] = {}


def register(source: SourceType) -> None:
    """Add a source (its `[capture.<key>]` section is then validated with the config)."""
    _registered[source.key] = source
    register_section(f"capture.{source.key}", source.Config)


def unregister(key: str) -> None:
    _registered.pop(key, None)
    unregister_section(f"capture.{key}")


def sources() -> dict[str, SourceType]:
    found = {s.key: s for s in BUILT_IN}
    for ep in metadata.entry_points(group=CAPTURE_ENTRY_POINTS):
        try:
            found[ep.name] = ep.load()
        except Exception as e:  # a broken optional source must not stop the daemon
            log.warning("capture source %s (%s) cannot be loaded: %s", ep.name, ep.value, e)
    return {**found, **_registered}


def enabled_sources(cfg: EdgeConfig, ingestor: Ingest, reject: Reject) -> list[CaptureSource]:
    """The sources the config turns on (`[capture.<key>]`), built but not started."""
    out: list[CaptureSource] = []
    for key, cls in sources().items():
        section = cfg.section(f"capture.{key}", cls.Config)
        if cls.enabled(section):
            out.append(cls(section, ingestor, reject))
    return out


__all__ = ["CaptureSource", "SourceType", "enabled_sources", "register", "sources", "unregister"]

"""The one interface every capture source implements."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel


class Ingest(Protocol):
    """`edge.ingest.ingestor.Ingestor`, as a source sees it. `ingest` raises
    `ImageRejectedError` for bad input and `OSError` when the store cannot take it now (the
    source keeps the image and retries); `submit` runs it in the ingest pool, and its future
    carries the same."""

    def ingest(self, data: bytes, source: str, name: str = "") -> Any: ...

    def submit(self, data: bytes, source: str, name: str = "") -> Future[Any]: ...


Reject = Callable[[Path, str, str], None]
"""(file, kind, reason): move a refused file into `rejected/` beside a reason file."""


def printable(name: str, limit: int = 200) -> str:
    """A name as a log line may show it: control and unprintable characters escaped (a file
    name cannot forge a log line), and long names cut."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return out if len(out) <= limit else out[: limit - 1] + "…"


class CaptureSource(Protocol):
    """A running source, built by its `SourceType`."""

    key: str

    beat: float
    """time.monotonic() of the source's loop's last round; older than `stall_after_s` means
    it is stuck (a blocked read, a hung driver), and /healthz and the watchdog say so."""
    stall_after_s: float

    @property
    def threads(self) -> list[threading.Thread]:
        """Threads that must stay alive while the source runs (the daemon's health check)."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def commands(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """What it offers over MQTT and the admin API (a camera: `capture`)."""
        ...


class SourceType(Protocol):
    """A source's class: its key (`[capture.<key>]`), its section's model, whether a section
    turns it on, and how it is built from (its section, the ingestor, reject)."""

    @property
    def key(self) -> str: ...

    @property
    def Config(self) -> type[BaseModel]: ...  # noqa: N802 (the section's model, a class)

    def enabled(self, cfg: Any) -> bool: ...

    def __call__(self, cfg: Any, ingestor: Ingest, reject: Reject) -> CaptureSource: ...

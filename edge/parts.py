"""The daemon is built from parts: each starts, stops against a deadline, names the threads
that must stay alive, reports its health, and may offer commands (run from MQTT or the admin
API). The daemon starts parts in order and stops them in reverse against one deadline;
`/healthz`, the watchdog and the MQTT `stats` are built from the list.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.store.records import Record

Command = Callable[[dict[str, Any]], dict[str, Any]]
"""A command handler: the request's JSON object in, the result's fields out; raises on error."""


class Part(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self, deadline: float) -> None:
        """Stop by time.monotonic() `deadline` (what is left undone stays in the store)."""
        ...

    @property
    def threads(self) -> list[threading.Thread]:
        """Threads that must stay alive while the part runs."""
        ...

    def health(self) -> dict[str, Any] | None: ...

    def commands(self) -> dict[str, Command]: ...


class BasePart:
    """Defaults for the optional parts of the protocol."""

    name = "part"

    def start(self) -> None:
        return None

    def stop(self, deadline: float) -> None:
        return None

    @property
    def threads(self) -> list[threading.Thread]:
        return []

    def health(self) -> dict[str, Any] | None:
        return None

    def commands(self) -> dict[str, Command]:
        return {}


@dataclass
class Hooks:
    """What plug-ins offer the rest of the daemon, filled while the parts are built and read
    when called."""

    event_urls: list[Callable[[Record], dict[str, Any]]] = field(default_factory=list)
    """Extra URLs for a record's events (cloud sync: where the original is in S3)."""
    original_url: Callable[[Record], str | None] | None = None
    """Where an original evicted from this device can be fetched (a presigned URL)."""
    fetch_original: Callable[[Record], bytes | None] | None = None
    """The bytes of an evicted original, for a re-analysis; None when unreachable now."""
    on_analysed: list[Callable[[], None]] = field(default_factory=list)
    """Called after each analysis is saved (wakes the sinks)."""
    on_caught_up: list[Callable[[], None]] = field(default_factory=list)
    """Called when the analysis has nothing left in hand (batching sinks deliver now)."""

"""The daemon is built from parts; plug-ins (sinks beyond the index, such as MQTT and S3) add
parts of their own without the daemon naming them.

A part starts, stops against a deadline, names the threads that must stay alive, reports its
health, and may offer commands (run from MQTT or the admin API) and hooks. The daemon starts
parts in order and stops them in reverse against one deadline; `/healthz`, the watchdog and
the MQTT `stats` are built from the list. A plug-in is found through the `s3e.plugins` entry
point group (cloud sync declares itself there), has a config section of its own, validated
with the rest of the config, and builds its part from the daemon's `Context`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

from pydantic import BaseModel

from edge.metrics import Metrics
from edge.store.records import Record
from edge.store.store import Store

log = logging.getLogger("s3e.parts")
ENTRY_POINTS = "s3e.plugins"

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
    """What plug-ins offer the rest of the daemon, filled at build time."""

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


@dataclass
class Context:
    """What a part is built from."""

    cfg: Any
    """The daemon's `EdgeConfig`."""
    store: Store
    metrics: Metrics
    hooks: Hooks
    base_url: str = ""


class Plugin(Protocol):
    """A plug-in found through the `s3e.plugins` entry points."""

    key: str
    """Its config section (`[<key>]` in the TOML file)."""
    Config: type[BaseModel]

    def enabled(self, cfg: BaseModel) -> bool: ...

    def build(self, cfg: BaseModel, ctx: Context) -> Part: ...


def discover() -> dict[str, Plugin]:
    """Installed plug-ins by config key; one that fails to import is logged and skipped
    (its section then reads as an unknown key)."""
    found: dict[str, Plugin] = {}
    for ep in metadata.entry_points(group=ENTRY_POINTS):
        try:
            plugin = ep.load()
        except Exception as e:  # a broken optional plug-in must not stop the daemon
            log.warning("plug-in %s (%s) cannot be loaded: %s", ep.name, ep.value, e)
            continue
        found[plugin.key] = plugin
    return found

"""The shape of a sink plug-in: a config section, whether it is on, and the part it builds
from the daemon's `Context`.

A sink plug-in is one module with one object of this shape, found through the registry
(`edge.sinks.registry`: the built-in ones, the `s3e.sinks` entry points, and any registered
at run time). Its section is validated with the rest of the config; a plug-in that fails to
import is logged and skipped (its section then reads as an unknown key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from edge.config import EdgeConfig
from edge.metrics import Metrics
from edge.parts import Command, Hooks, Part
from edge.search.indexes import Indexes
from edge.store.store import Store


class Services(Protocol):
    """What the daemon offers its parts once all are built."""

    def commands(self) -> dict[str, Command]:
        """Every part's commands, by name."""
        ...

    def stats(self) -> dict[str, Any]:
        """What `<prefix>/<device>/stats` says."""
        ...

    def base_url(self) -> str:
        """How a client reaches this device's HTTP endpoint (its bound port once started)."""
        ...


@dataclass(frozen=True)
class Context:
    """What a part is built from."""

    cfg: EdgeConfig
    store: Store
    metrics: Metrics
    hooks: Hooks
    indexes: Indexes
    """The search indexes the `index` sink keeps up to the store."""
    services: Services


class SinkPlugin(Protocol):
    @property
    def key(self) -> str:
        """Its config section (`[<key>]` in the TOML file)."""
        ...

    @property
    def Config(self) -> type[BaseModel]:  # noqa: N802 (the section's model, a class)
        ...

    @property
    def turned_on_by(self) -> str:
        """What turns it on, said when it is off (e.g. "mqtt.host")."""
        ...

    def enabled(self, cfg: EdgeConfig) -> bool: ...

    def build(self, cfg: EdgeConfig, ctx: Context) -> Part:
        """Raises ValueError or RuntimeError for a section it cannot start with."""
        ...

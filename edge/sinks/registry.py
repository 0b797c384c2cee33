"""The sinks the daemon builds, in order: the built-in ones, the `s3e.sinks` entry points of
installed packages (cloud sync's `s3`), and any registered at run time. Adding a sink is one
module with a `SinkPlugin` and one line here, or an entry point."""

from __future__ import annotations

import logging
from importlib import metadata

from edge.config import register_section, unregister_section
from edge.sinks import index
from edge.sinks.mqtt import sink as mqtt
from edge.sinks.plugin import SinkPlugin

log = logging.getLogger("s3e.sinks")
ENTRY_POINTS = "s3e.sinks"
BUILT_IN: tuple[SinkPlugin, ...] = (index.plugin, mqtt.plugin)
_registered: dict[str, SinkPlugin] = {}


def register(plugin: SinkPlugin) -> None:
    """Add a sink (its section is then validated as part of the config)."""
    _registered[plugin.key] = plugin
    register_section(plugin.key, plugin.Config)


def unregister(key: str) -> None:
    _registered.pop(key, None)
    unregister_section(key)


def sink_plugins() -> list[SinkPlugin]:
    found = {p.key: p for p in BUILT_IN}
    for ep in metadata.entry_points(group=ENTRY_POINTS):
        try:
            plugin = ep.load()
        except Exception as e:  # a broken optional plug-in must not stop the daemon
            log.warning("sink %s (%s) cannot be loaded: %s", ep.name, ep.value, e)
            continue
        found[plugin.key] = plugin
    return list({**found, **_registered}.values())

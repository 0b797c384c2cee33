"""The `mqtt` sink: each record's event (and alert) published from the store.

paho keeps unacknowledged QoS 1 messages only in memory, so durability comes from the store:
the sink publishes due records in capture order, waits for their PUBACKs (at most
`max_inflight` at a time), and reports only the acknowledged ones, which are then marked
published. A broker outage, a cut network or a kill -9 leaves the rest due, and they are sent
again: at least once, duplicates carrying the same id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from edge.analysis import views
from edge.config import EdgeConfig, MqttConfig
from edge.parts import BasePart
from edge.sinks.mqtt import events
from edge.sinks.mqtt.link import MqttLink, wait_acked
from edge.sinks.plugin import Context
from edge.sinks.worker import SinkWorker
from edge.store.records import Record
from edge.store.store import Store

log = logging.getLogger("s3e.mqtt")


class MqttSink:
    """The `published` sink: each record's event (and alert), acknowledged or not done.

    A record already published on this connection and still awaiting its PUBACK is waited on,
    not published again; the map is cleared at each connect, when paho's own queue is dropped
    and the store's due records are the only truth."""

    name = "mqtt"

    def __init__(
        self,
        link: MqttLink,
        store: Store,
        cfg: MqttConfig,
        base_url: Callable[[], str],
        extra_urls: list[Callable[[Record], dict[str, Any]]],
    ) -> None:
        """`base_url`: where subscribers reach this device's HTTP endpoint (`mqtt.base_url`
        when set); `extra_urls`: more URLs of a record (cloud sync's S3 key)."""
        self.link, self.store, self.mqtt, self.extra_urls = link, store, cfg, extra_urls
        fixed = cfg.base_url.rstrip("/")
        self.base_url = (lambda: fixed) if fixed else base_url
        self._inflight: dict[tuple[str, int], list[mqtt.MQTTMessageInfo]] = {}
        link.on_connected.append(self._inflight.clear)

    @property
    def awaiting_ack(self) -> int:
        """Events and alerts published on this connection for records not yet acknowledged.
        paho holds no event or alert that is not counted here: a PUBACK takes a message out of
        paho's queue before its record leaves this count, and a connect empties both (a
        `reset` empties only this one), so this bounds paho's queue but for status, stats and
        command results. A round publishes only the records of its batch not in flight
        already, so while records become due in capture order this stays within one batch,
        at most two messages a record."""
        return sum(len(infos) for infos in list(self._inflight.values()))

    def deliver(self, records: list[Record]) -> list[str]:
        """Publish the batch (paho keeps at most `max_inflight` awaiting PUBACK and holds the
        rest of this batch in memory), then report the records acknowledged, in order."""
        if not self.link.connected.is_set():
            return []
        per_record = [self._inflight.get((r.id, r.revision)) or self._publish(r) for r in records]
        flat = [info for infos in per_record for info in infos]
        acked = wait_acked(self.link, flat, time.monotonic() + self.mqtt.publish_timeout_s)
        done, n = [], 0
        for r, infos in zip(records, per_record, strict=True):
            n += len(infos)
            if n > acked:
                break
            done.append(r.id)
            self._inflight.pop((r.id, r.revision), None)
        for info in flat[acked:]:
            if info.mid in self.link.refused:
                log.error(
                    "MQTT broker refused an event on %s: %s (check the broker's ACL)",
                    self.link.topics.events,
                    self.link.refused[info.mid],
                )
                break
        return done

    def _publish(self, r: Record) -> list[mqtt.MQTTMessageInfo]:
        urls = events.urls(self.base_url(), r.id)
        for more in self.extra_urls:
            urls.update(more(r))
        thumb = None
        if self.mqtt.include_thumbnail:
            path = self.store.derived_path(r.id, "thumb.jpg")
            if path.exists():
                thumb = events.small_jpeg(path.read_bytes(), self.mqtt.thumbnail_max_bytes)
        vecs = views.vectors(self.store.blobs_of(r.id, views.VECTOR_BLOBS))
        payload = views.event(r, urls, thumb, vecs)
        infos = [
            self.link.client.publish(
                self.link.topics.events, json.dumps(payload), qos=self.mqtt.qos
            )
        ]
        alerts = self.mqtt.alerts
        alert = views.alert(r, alerts.anomaly_above, alerts.labels, urls)
        if alert is not None:
            infos.append(
                self.link.client.publish(
                    self.link.topics.alerts, json.dumps(alert), qos=self.mqtt.qos
                )
            )
        self._inflight[(r.id, r.revision)] = infos
        return infos

    def reset(self) -> None:
        """Nothing to forget at the broker: every record is simply published again."""
        self._inflight.clear()

    def publish_stats(self, stats: dict[str, Any]) -> None:
        if self.link.connected.is_set():
            payload = {"schema": events.SCHEMA_VERSION, "device": self.link.device_id, **stats}
            self.link.client.publish(
                self.link.topics.stats, json.dumps(payload), qos=1, retain=True
            )


class MqttPart(BasePart):
    """The link, the `mqtt` sink's worker and the retained stats, started and stopped as one;
    `cmd/<name>` runs the daemon's commands."""

    name = "mqtt"

    def __init__(self, cfg: MqttConfig, ctx: Context) -> None:
        """Raises RuntimeError for a connection it cannot set up (an unreadable password
        file, a bad TLS file)."""
        store, metrics, services = ctx.store, ctx.metrics, ctx.services
        self.link = MqttLink(cfg, ctx.cfg.device_id, services.commands)
        self.sink = MqttSink(self.link, store, cfg, services.base_url, ctx.hooks.event_urls)
        # Wake at every new record: an event's latency matters more than batching. Take up to
        # 16 x max_inflight per round: each round ends waiting for its last PUBACK, and fewer
        # rounds deliver several times faster (bench/mqtt.py).
        self.worker = SinkWorker(
            store,
            self.sink,
            batch=16 * cfg.max_inflight,
            interval=1.0,
            metrics=metrics,
            wake_after=1,
        )
        self.link.on_connected.append(self.worker.wake.set)
        ctx.hooks.on_analysed.append(self.worker.notify)
        metrics.gauge(
            "s3e_queue_publish",
            "Analysed records not yet acknowledged by the broker",
            lambda: store.count_due("mqtt"),
        )
        self.interval = cfg.stats_interval_s
        self._stats = services.stats
        self._stop = threading.Event()
        self._stats_thread = threading.Thread(
            target=self._stats_loop, name="mqtt-stats", daemon=True
        )

    @property
    def threads(self) -> list[threading.Thread]:
        return [self.link.thread, self.worker.thread, self._stats_thread]

    def start(self) -> None:
        self.link.start()
        self.worker.start()
        self._stats_thread.start()

    def stop(self, deadline: float) -> None:
        """Publish what is due one last time (bounded), then say `offline` and disconnect."""
        self.worker.stop(max(1.0, deadline - time.monotonic()))
        self._stop.set()
        if self._stats_thread.ident is not None:
            self._stats_thread.join(2.0)
        self.link.stop(max(1.0, deadline - time.monotonic()))

    def health(self) -> dict[str, Any]:
        return {"broker": self.link.where, "connected": self.link.connected.is_set()}

    def _stats_loop(self) -> None:
        seen, last = -1, 0.0
        while not self._stop.wait(1.0):
            fresh = self.link.connects != seen
            if self.link.connected.is_set() and (fresh or time.monotonic() - last >= self.interval):
                try:
                    self.sink.publish_stats(self._stats())
                except Exception:  # stats are best effort; the thread lives on
                    log.exception("cannot publish stats")
                seen, last = self.link.connects, time.monotonic()


class MqttPlugin:
    key = "mqtt"
    Config = MqttConfig
    turned_on_by = "mqtt.host"

    def enabled(self, cfg: EdgeConfig) -> bool:
        return bool(cfg.mqtt.host)

    def build(self, cfg: EdgeConfig, ctx: Context) -> MqttPart:
        return MqttPart(cfg.mqtt, ctx)


plugin = MqttPlugin()

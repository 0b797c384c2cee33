"""Ingest workers: the devices' MQTT events into the archive, at least once end to end.

Each worker holds a persistent MQTT 5 session on a shared subscription
(`$share/<group>/<prefix>/+/events`), so the broker splits the events between the workers of
a group, and keeps a worker's unacknowledged events for it across a restart. Events gather
into a batch (`batch_events` or `batch_seconds`), the batch is merged into the table, and
only then are its events acknowledged: a worker killed mid-batch leaves them unacknowledged,
and they come again. A merge keeps the higher revision, so an event that comes twice changes
nothing. An event that is not one (bad JSON, no id) is logged once, counted, and acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.archive import Archive, row
from fleet.config import FleetConfig

log = logging.getLogger("s3e.fleet.ingest")
SESSION_EXPIRY_S = 7 * 86400


@dataclass
class Stats:
    events: int = 0
    rows: int = 0
    batches: int = 0
    invalid: int = 0
    last_batch_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class Ingestor:
    def __init__(self, cfg: FleetConfig, archive: Archive) -> None:
        self.cfg, self.archive = cfg, archive
        m = cfg.mqtt
        client_id = m.client_id or f"s3e-fleet-{socket.gethostname()}-{os.getpid()}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        if m.username:
            self.client.username_pw_set(m.username, m.password.get_secret_value() or None)
        if m.tls.ca:
            self.client.tls_set(
                ca_certs=m.tls.ca, certfile=m.tls.cert or None, keyfile=m.tls.key or None
            )
        self.topic = f"$share/{m.share_group}/{m.topic_prefix}/+/events"
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.pending: list[tuple[int, bytes | bytearray]] = []
        self.lock = threading.Condition()
        self.stats = Stats()
        self.stopping = threading.Event()
        self.connected = threading.Event()

    # -- MQTT --------------------------------------------------------------------------------
    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = min(65535, 4 * self.cfg.mqtt.batch_events)
        self.client.connect_async(
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
            keepalive=30,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error(
                "MQTT broker %s:%d refused the worker: %s",
                self.cfg.mqtt.host,
                self.cfg.mqtt.port,
                reason,
            )
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if any(c.is_failure for c in codes):
            log.error("MQTT broker refused the subscription to %s: %s", self.topic, codes)
            return
        self.connected.set()
        log.info("subscribed to %s on %s:%d", self.topic, self.cfg.mqtt.host, self.cfg.mqtt.port)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.pending.append((msg.mid, msg.payload))
            if len(self.pending) >= self.cfg.mqtt.batch_events:
                self.lock.notify()

    # -- batches -----------------------------------------------------------------------------
    def run(self) -> None:
        """Merge batches until `stop()`; a failed merge keeps its events for the next try."""
        while not self.stopping.is_set():
            with self.lock:
                if len(self.pending) < self.cfg.mqtt.batch_events:
                    self.lock.wait(self.cfg.mqtt.batch_seconds)
                batch = list(self.pending)
            if not batch:
                continue
            try:
                self.commit(batch)
            except Exception as e:  # the archive is down: keep the events, try again
                log.error(
                    "archive merge failed, %d events kept for the next try: %s", len(batch), e
                )
                self.stopping.wait(min(30.0, 2 * self.cfg.mqtt.batch_seconds))
                continue
            with self.lock:
                del self.pending[: len(batch)]

    def commit(self, batch: list[tuple[int, bytes | bytearray]]) -> None:
        t0 = time.monotonic()
        rows = []
        for _, payload in batch:
            try:
                doc = json.loads(payload)
                rows.append(row(doc, self.cfg.s3.bucket))
            except (ValueError, KeyError, TypeError) as e:
                self.stats.invalid += 1
                log.warning("not an event (%s), dropped: %.120r", e, payload)
        self.archive.merge(rows)
        for mid, _ in batch:  # only now: the batch is committed
            self.client.ack(mid, 1)
        self.stats.events += len(batch)
        self.stats.rows += len(rows)
        self.stats.batches += 1
        self.stats.last_batch_s = round(time.monotonic() - t0, 3)

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            self.lock.notify()
        self.client.disconnect()
        self.client.loop_stop()

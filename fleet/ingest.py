"""Ingest workers: the devices' MQTT events into the archive, at least once end to end.

Each worker holds a persistent MQTT 5 session on a shared subscription
(`$share/<group>/<prefix>/+/events`), so the broker splits the events between the workers of
a group, and keeps a worker's unacknowledged events for it across a restart. Events gather
into a batch (`batch_events` or `batch_seconds`), the batch is merged into the table, and
only then are its events acknowledged: a worker killed mid-batch leaves them unacknowledged,
and they come again. A merge keeps the higher revision, so an event that comes twice changes
nothing.

Each message keeps its topic, and the topic names the device (`<prefix>/<device>/events`; the
broker lets a device publish under its own name only). An event whose payload names another
device, one that is not an event (bad JSON, no sha256 id, fields of the wrong type), and one
whose revision its device cannot have reached (`fleet.trust.revision_ok`) are refused:
counted in `Stats`, logged one line per burst, and acknowledged, so the broker does not send
them again. A row's S3 keys are rebuilt from the topic's device, never taken from the payload
(`fleet.archive.row`).
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
from fleet.trust import INVALID, Refusals, RefusedError, above_step, admit, topic_device

log = logging.getLogger("s3e.fleet.ingest")
SESSION_EXPIRY_S = 7 * 86400


@dataclass
class Stats:
    """A worker's counts; each refusal is counted under its `fleet.trust` reason."""

    events: int = 0
    rows: int = 0
    batches: int = 0
    invalid: int = 0
    """not an event (bad JSON, no sha256 id, a field of the wrong type)"""
    wrong_device: int = 0
    """the payload named another device than its topic"""
    revision_jump: int = 0
    """a revision above what its device can have sent"""
    last_batch_s: float = 0.0
    errors: list[str] = field(default_factory=list)


Message = tuple[int, str, bytes | bytearray]
"""(mid, topic, payload) of one delivered event."""


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
        self.pending: list[Message] = []
        self.lock = threading.Condition()
        self.stats = Stats()
        self.refusals = Refusals(log)
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
            self.pending.append((msg.mid, msg.topic, msg.payload))
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
            self.refusals.flush()
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

    def commit(self, batch: list[Message]) -> None:
        """Merge the batch's events, then acknowledge every message of it, the refused too."""
        t0 = time.monotonic()
        rows, refused = [], []
        for _, topic, payload in batch:
            try:
                rows.append(self.event_row(topic, payload))
            except RefusedError as e:
                refused.append(e)
        check = above_step(rows)
        held = {k: h.revision for k, h in self.archive.held(check).items()} if check else {}
        rows, jumps = admit(rows, held)
        table, unwritable = self.archive.writable(rows)
        self.archive.merge(table)
        for mid, _, _ in batch:  # only now: the batch is committed
            self.client.ack(mid, 1)
        bad = [RefusedError(INVALID, f"{r['id']}:{r['device']}: unwritable") for r in unwritable]
        for no in [*refused, *jumps, *bad]:
            setattr(self.stats, no.reason, getattr(self.stats, no.reason) + 1)
            self.refusals.refuse(no.reason, no.detail)
        self.stats.events += len(batch)
        self.stats.rows += table.num_rows
        self.stats.batches += 1
        self.stats.last_batch_s = round(time.monotonic() - t0, 3)

    def event_row(self, topic: str, payload: bytes | bytearray) -> dict[str, Any]:
        """The row of one event, for the device its topic names; raises `RefusedError`."""
        device = topic_device(topic, self.cfg.mqtt.topic_prefix)
        if device is None:
            raise RefusedError(INVALID, f"not a device's events topic: {topic[:120]!r}")
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError) as e:
            why = f"{device}: not JSON ({e}): {bytes(payload[:80])!r}"
            raise RefusedError(INVALID, why) from None
        urls = doc.get("urls") if isinstance(doc, dict) else None
        urls = urls if isinstance(urls, dict) else {}
        s3 = urls.get("s3")
        original = (
            s3 if isinstance(s3, str) and s3.startswith(f"s3://{self.cfg.s3.bucket}/") else ""
        )
        return row(doc, device, self.cfg.s3.prefix, original, bool(urls.get("s3_thumbnail")))

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            self.lock.notify()
        self.client.disconnect()
        self.client.loop_stop()

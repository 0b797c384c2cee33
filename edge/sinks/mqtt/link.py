"""The MQTT connection (paho-mqtt 2), kept up by itself.

A supervisor thread connects, lets paho's network thread run the connection until it drops,
waits with exponential back-off and jitter, and connects again. Each new kind of failure
(refused credentials, a TLS error, no broker) is logged once; the recovery too. On connect it
publishes the retained `online` status (the last will says `offline`), subscribes to `cmd/#`
and, if asked, publishes Home Assistant discovery configs.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig
from edge.parts import Command
from edge.sinks.mqtt import events

log = logging.getLogger("s3e.mqtt")


class MqttLink:
    """One paho client. A supervisor thread connects (so a failure is seen with its cause),
    hands the live connection to paho's own network thread (`loop_start`: from then on other
    threads' publishes only queue), and when it drops, waits with back-off and jitter and
    connects again."""

    STABLE_S = 10.0
    """A connection that lasted this long resets the back-off; a shorter one does not, so a
    broker that accepts and drops at once is not hammered."""

    def __init__(
        self, cfg: MqttConfig, device_id: str, commands: Callable[[], dict[str, Command]]
    ) -> None:
        """`commands`: what `cmd/<name>` runs, asked at each command."""
        self.cfg, self.device_id, self.commands = cfg, device_id, commands
        self.topics = events.Topics(cfg.topic_prefix, device_id)
        self.client_id = cfg.client_id or f"s3e-{device_id}"
        self.on_connected: list[Callable[[], None]] = []
        """Called (in paho's thread) after each successful connect, before paho re-sends."""
        self.connects = 0
        self._attempts = 0
        v5 = cfg.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
            reconnect_on_failure=False,
        )
        self.client.suppress_exceptions = True  # a callback's bug must not kill the network loop
        if cfg.username:
            self.client.username_pw_set(cfg.username, read_password(cfg) or None)
        if cfg.tls.ca:
            self.client.tls_set(
                ca_certs=cfg.tls.ca,
                certfile=cfg.tls.cert or None,
                keyfile=cfg.tls.key or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.client.will_set(self.topics.status, "offline", qos=1, retain=True)
        self._inflight = cfg.max_inflight
        self.client.max_inflight_messages_set(self._inflight)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.connected = threading.Event()
        self.acked = threading.Condition()
        """Notified at every PUBACK and disconnect, for `wait_acked`."""
        self.refused: dict[int, str] = {}
        """mid -> reason, for PUBACKs that carried a failure code (MQTT 5)."""
        self._down = threading.Event()
        self._stop = threading.Event()
        self._problem = ""
        self._answered = False
        """Whether the broker sent a CONNACK on the current connection."""
        self.thread = threading.Thread(target=self._run, name="mqtt", daemon=True)

    @property
    def attempts(self) -> int:
        """Connections tried so far, whether the broker took them or not (`connects` counts
        those it took): it moves on at each retry, so refusals can be told from a link that
        stopped trying."""
        return self._attempts

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def start(self) -> None:
        log.info(
            "publishing to MQTT broker %s as %s, topics %s/%s/#",
            self.where,
            self.client_id,
            self.cfg.topic_prefix,
            self.device_id,
        )
        if self.cfg.qos == 0:
            log.warning(
                "mqtt.qos = 0: no PUBACK, so an event counts as published once sent; "
                "delivery is at most once"
            )
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say `offline` (retained) and disconnect cleanly, so the will is not needed."""
        if self.connected.is_set():
            info = self.client.publish(self.topics.status, "offline", qos=1, retain=True)
            wait_acked(self, [info], time.monotonic() + min(timeout, 2.0))
        self._stop.set()
        self._down.set()
        self.client.disconnect()
        if self.thread.ident is not None:  # it started
            self.thread.join(timeout)

    def _report(self, problem: str) -> None:
        """Log a connection problem once, not at every retry."""
        if problem != self._problem:
            log.error("%s", problem)
            self._problem = problem

    def _run(self) -> None:
        delay = self.cfg.reconnect_min_s
        while not self._stop.is_set():
            up_at = None
            try:
                self._down.clear()
                if self.client.max_inflight_messages != self._inflight:
                    self.client.max_inflight_messages_set(self._inflight)
                self._attempts += 1
                self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
                up_at = time.monotonic()
                self._answered = False
                self.client.loop_start()
                self._down.wait()
                self.client.loop_stop()
                if not self._answered and not self._stop.is_set():
                    self._report(
                        f"MQTT broker {self.where} closed the connection before "
                        "answering it (a TLS client certificate required? "
                        "mqtt.tls.cert, mqtt.tls.key)"
                    )
            except ssl.SSLError as e:
                self._report(f"MQTT broker {self.where}: TLS failed: {e.reason or e}")
            except OSError as e:
                self._report(f"MQTT broker {self.where} unreachable: {e.strerror or e}")
            except Exception:  # keep the supervisor alive whatever paho raises
                log.exception("MQTT connection to %s failed", self.where)
            self._set_down()
            if self._stop.is_set():
                return
            if up_at is not None and time.monotonic() - up_at >= self.STABLE_S:
                delay = self.cfg.reconnect_min_s
            # exponential back-off with jitter, so a fleet does not reconnect in step
            if self._stop.wait(delay * random.uniform(0.5, 1.5)):
                return
            delay = min(delay * 2, self.cfg.reconnect_max_s)

    def _set_down(self) -> None:
        self.connected.clear()
        with self.acked:
            self.acked.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        was_up = self.connected.is_set()
        self._set_down()
        self._down.set()
        if was_up and not self._stop.is_set():
            self._report(
                f"MQTT broker {self.where}: connection lost ({rc.getName()}); reconnecting"
            )

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            self.refused[mid] = rc.getName()
        with self.acked:
            self.acked.notify_all()

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, props: Any
    ) -> None:
        self._answered = True
        if rc.is_failure:
            hint = " (check mqtt.username and mqtt.password)" if rc.value in (134, 135) else ""
            self._report(f"MQTT broker {self.where} refused the connection: {rc.getName()}" + hint)
            self._down.set()
            return
        # Our store re-sends what was not acknowledged; paho re-sending too would double it.
        client.drop_out_messages()
        limit = getattr(props, "ReceiveMaximum", None) if props is not None else None
        if limit and limit < self._inflight:  # paho cannot change it on a live connection
            log.warning(
                "MQTT broker %s takes %d unacknowledged messages, not %d; "
                "reconnecting with that window",
                self.where,
                limit,
                self._inflight,
            )
            self._inflight = limit
            self._down.set()
            client.disconnect()
            return
        self.connected.set()
        log.info("MQTT broker %s: connected%s", self.where, " again" if self._problem else "")
        self._problem = ""
        client.publish(self.topics.status, "online", qos=1, retain=True)
        client.subscribe(self.topics.cmd + "#", qos=1)
        if self.cfg.homeassistant:
            for topic, conf in events.homeassistant_configs(
                self.cfg, self.device_id, self.topics
            ).items():
                client.publish(topic, json.dumps(conf), qos=1, retain=True)
        self.connects += 1
        for hook in self.on_connected:
            hook()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.topics.cmd_result:
            return  # our own answers
        name = msg.topic.removeprefix(self.topics.cmd)
        if msg.retain:  # a command left retained would run again at every reconnect
            log.warning("MQTT command %r ignored: it was retained", name)
            return
        result: dict[str, Any] = {"schema": events.SCHEMA_VERSION, "command": name}
        try:
            request = json.loads(msg.payload) if msg.payload.strip() else {}
            if not isinstance(request, dict):
                raise ValueError("payload must be a JSON object")
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            result.update(ok=False, error=f"payload is not a JSON object: {e}")
            request = None
        if request is not None:
            result["request_id"] = request.get("request_id")
            table = self.commands()
            handler = table.get(name)
            if handler is None:
                known = ", ".join(sorted(table))
                result.update(ok=False, error=f"unknown command {name!r} (known: {known})")
            else:
                try:
                    result.update(ok=True, **handler(request))
                except Exception as e:  # a command must never take the daemon down
                    result.update(ok=False, error=f"{type(e).__name__}: {e}")
        if not result["ok"]:
            log.warning("MQTT command %r failed: %s", name, result["error"])
        client.publish(self.topics.cmd_result, json.dumps(result, default=str), qos=1)


def read_password(cfg: MqttConfig) -> str:
    if not cfg.password_file:
        return cfg.password.get_secret_value()
    try:
        return Path(cfg.password_file).read_text().strip()
    except OSError as e:
        raise RuntimeError(f"mqtt.password_file {cfg.password_file}: {e.strerror or e}") from None


def wait_acked(link: MqttLink, infos: list[mqtt.MQTTMessageInfo], deadline: float) -> int:
    """How many of `infos`, in order, the broker acknowledged (without a failure code) before
    the deadline or a disconnect."""
    acked = 0
    with link.acked:
        while acked < len(infos):
            info = infos[acked]
            try:
                if info.is_published() and info.mid not in link.refused:
                    acked += 1
                    continue
            except (RuntimeError, ValueError):  # queued while disconnected: not going out now
                return acked
            left = deadline - time.monotonic()
            if left <= 0 or not link.connected.is_set() or info.mid in link.refused:
                return acked
            link.acked.wait(min(left, 0.5))
    return acked

"""One MQTT 5 login to the test broker, as a device or an operator: what the broker answered
to each publish (PUBACK's reason) and each subscription (SUBACK's), and what it delivered."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from support.common import wait_until
from support.mqtt_broker import Broker


class Login:
    def __init__(self, broker: Broker, username: str, password: str, client_id: str = "") -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, str] = {}
        self.subacks: dict[int, list[str]] = {}
        self.connack: str | None = None
        self.disconnects = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{username}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async("127.0.0.1", broker.port, 30)
        self.client.loop_start()
        wait_until(lambda: self.connack is not None, 15, f"the broker's answer to {username}")
        if self.connack != "Success":
            self.close()
            raise ConnectionRefusedError(f"{username}: {self.connack}")

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connack = str(reason)

    def _on_disconnect(self, *_: Any) -> None:
        self.disconnects += 1

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self.lock:
            self.pubacks[mid] = str(reason)

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        with self.lock:
            self.subacks[mid] = [str(c) for c in codes]

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes | str | dict[str, Any]) -> str:
        """QoS 1; the reason code of the broker's PUBACK ("Success", "Not authorized", ...)."""
        body = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        mid = self.client.publish(topic, body, qos=1).mid
        wait_until(lambda: mid in self.pubacks, 15, f"the PUBACK of {topic}")
        return self.pubacks[mid]

    def subscribe(self, topic: str) -> list[str]:
        """QoS 1; the reason codes of the broker's SUBACK."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        wait_until(lambda: mid in self.subacks, 15, f"the SUBACK of {topic}")
        return self.subacks[mid]

    def received(self, topic_prefix: str = "") -> list[tuple[str, bytes]]:
        with self.lock:
            return [(t, p) for t, p in self.messages if t.startswith(topic_prefix)]

    def close(self) -> None:
        self.client.on_disconnect = None
        self.client.disconnect()
        self.client.loop_stop()

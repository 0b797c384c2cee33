"""Whether a subscription is in place at the broker, seen in mosquitto's own log: a test then
publishes only once a subscriber (a `Collector`, or `s3e-edge subscribe` in a process of its
own) will get it, instead of sleeping for it to subscribe.

mosquitto runs one thread: once its log shows the subscription, it has handled the whole
SUBSCRIBE, so every message it takes after that reaches the subscriber."""

from __future__ import annotations

from support.mqtt_broker import Broker

LOG_SUBSCRIPTIONS = "".join(
    f"log_type {kind}\n"
    for kind in ("error", "warning", "notice", "information", "subscribe", "unsubscribe")
)
"""Broker config lines: mosquitto's default log types, and one line per subscription
(`<time>: <client id> <qos> <topic filter>`)."""


def subscriptions(broker: Broker, topic: str, client_id: str | None = None) -> int:
    """Subscriptions to exactly `topic` the broker has logged (by `client_id`, if given); the
    broker must have been started with `LOG_SUBSCRIPTIONS` in its config."""
    path = broker.root / "mosquitto.log"
    if not path.exists():
        return 0
    n = 0
    for line in path.read_text(errors="replace").splitlines():
        _, _, entry = line.partition(": ")
        parts = entry.split(" ")
        if len(parts) == 3 and parts[1].isdigit() and parts[2] == topic:
            n += client_id is None or parts[0] == client_id
    return n

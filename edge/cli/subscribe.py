"""`s3e-edge subscribe`: the reference subscriber for `<prefix>/<device>/events`.

It shows what a subscriber must do with at-least-once delivery: validate each payload against
the published JSON Schema, drop repeated (device, id, revision) (a re-analysed image's next
revision is a correction, kept), and keep a persistent session (a fixed client id,
`clean_start` off, a session expiry) so events published while it was away are queued for it
by the broker. Events go to stdout or are appended to a JSON-lines file, whose keys are read
back at start so a restarted subscriber does not write an event twice.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from jsonschema import Draft202012Validator
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.sinks.mqtt.events import json_schema

log = logging.getLogger("s3e.subscribe")
HELP = "print or save the events of one or every device (validated, deduplicated)"
DESCRIPTION = (
    "The reference MQTT subscriber: validates each event against the JSON Schema, drops "
    "repeated ids, keeps a persistent session."
)


class Subscriber:
    def __init__(self, out: TextIO, seen: set[tuple[str, str, int]], count: int | None) -> None:
        self.out, self.seen, self.count = out, seen, count
        self.validator = Draft202012Validator(
            json_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        self.received = self.duplicates = self.invalid = self.new = 0
        self.done = threading.Event()

    def on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        try:
            payload = json.loads(msg.payload)
        except ValueError as e:
            self.invalid += 1
            log.warning("%s: not JSON (%s)", msg.topic, e)
            return
        errors = sorted(self.validator.iter_errors(payload), key=lambda e: list(e.path))
        if errors:
            self.invalid += 1
            where = "/".join(str(p) for p in errors[0].path) or "(top)"
            log.warning("%s: invalid event at %s: %s", msg.topic, where, errors[0].message)
            return
        # the same image on two devices is two events; a re-analysis is a new revision
        key = (payload["device"], payload["id"], int(payload.get("revision", 1)))
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        self.new += 1
        self.out.write(json.dumps(payload, sort_keys=True) + "\n")
        self.out.flush()
        if self.count is not None and self.new >= self.count:
            self.done.set()


def read_seen(path: Path) -> set[tuple[str, str, int]]:
    seen = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
                seen.add((event["device"], event["id"], int(event.get("revision", 1))))
            except (ValueError, KeyError, TypeError):
                continue
    return seen


def run(args: Any) -> int:
    host, _, port = args.broker.partition(":")
    topic = f"{args.prefix}/{args.device}/events"
    out: TextIO = open(args.out, "a") if args.out else sys.stdout  # noqa: SIM115
    seen = read_seen(Path(args.out)) if args.out else set()
    sub = Subscriber(out, seen, args.count)
    device = args.device.replace("+", "all")
    client_id = args.client_id or f"s3e-sub-{socket.gethostname()}-{device}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if args.username:
        client.username_pw_set(args.username, args.password or None)
    if args.ca:
        client.tls_set(ca_certs=args.ca)
    client.on_message = sub.on_message

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("broker %s refused the connection: %s", args.broker, rc.getName())
            return
        c.subscribe(topic, qos=1)
        log.info("subscribed to %s on %s", topic, args.broker)

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = args.session_expiry
    client.reconnect_delay_set(1, 30)
    client.connect_async(host, int(port or 1883), 30, clean_start=False, properties=props)
    client.loop_start()
    try:
        sub.done.wait(args.timeout)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
        if out is not sys.stdout:
            out.close()
    log.info(
        "%d messages: %d new, %d duplicates dropped, %d invalid",
        sub.received,
        sub.new,
        sub.duplicates,
        sub.invalid,
    )
    if args.count is not None and sub.new < args.count:
        log.error("stopped with %d of the %d events asked for", sub.new, args.count)
        return 1
    return 0


def add_arguments(p: Any) -> None:
    p.add_argument("--broker", required=True, help="HOST[:PORT] of the MQTT broker")
    p.add_argument("--device", default="+", help="device id, or + for every device")
    p.add_argument("--prefix", default="s3e", help="topic prefix (mqtt.topic_prefix)")
    p.add_argument("--out", help="append events to this JSON-lines file (default: stdout)")
    p.add_argument("--client-id", default="", help="fixed id for the persistent session")
    p.add_argument(
        "--session-expiry",
        type=int,
        default=86400,
        help="seconds the broker keeps our session and queued events",
    )
    p.add_argument("--username", default="")
    p.add_argument("--password", default="")
    p.add_argument("--ca", default="", help="CA certificate (PEM) for a TLS broker")
    p.add_argument("--count", type=int, default=None, help="exit after this many new events")
    p.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")

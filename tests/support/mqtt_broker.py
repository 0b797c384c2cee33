"""A real mosquitto for the tests: started on 127.0.0.1 on a free port with a temporary config,
stopped and started again at will; a collecting subscriber; a self-signed CA for TLS."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from support.common import free_port


class Broker:
    """`extra`: config lines instead of `allow_anonymous true`; `password_file` and `acl_file`:
    logins only (`allow_anonymous false`), each user held to the ACL. `max_queued_messages`:
    0 (no limit) by default, but mosquitto 2.0.11 with no limit drops a client's connection
    right after refusing it a QoS 1 publish, so a broker with an ACL is given a limit."""

    def __init__(
        self,
        root: Path,
        extra: str = "",
        password_file: Path | None = None,
        acl_file: Path | None = None,
        max_queued_messages: int = 0,
    ) -> None:
        if password_file is not None:
            extra += f"allow_anonymous false\npassword_file {password_file}\n"
        if acl_file is not None:
            extra += f"acl_file {acl_file}\n"
        if shutil.which("mosquitto") is None:
            pytest.fail("mosquitto is not installed: apt-get install mosquitto mosquitto-clients")
        self.root, self.port = root, free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"persistence true\npersistence_location {root}/\n"
            # the default (1000) silently drops QoS 1 messages to a slow subscriber
            f"max_queued_messages {max_queued_messages}\n"
            f"user {getpass.getuser()}\n" + (extra or "allow_anonymous true\n")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        log = open(self.root / "mosquitto.log", "ab")  # noqa: SIM115 - the broker owns it
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((self.root / "mosquitto.log").read_text()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Collector:
    """A subscriber that keeps every message, with a persistent session across broker
    restarts (the broker queues what arrives while it is away)."""

    def __init__(self, broker: Broker, *topics: str, client_id: str = "", **tls: Any) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if tls:
            self.client.tls_set(**tls)
        self.topics = topics
        self.client.on_connect = lambda c, *_: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(
            "127.0.0.1", broker.port, 10, clean_start=not client_id, properties=props
        )
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def payloads(self, suffix: str) -> list[Any]:
        with self.lock:
            got = [p for t, p, _ in self.messages if t.endswith(suffix)]
        return [json.loads(p) if p[:1] in (b"{", b"[") else p.decode() for p in got]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _signed(root: Path, stem: str, cn: str, ca: Path, ca_key: Path, ext: Path | None) -> Path:
    """A key and a certificate for `cn`, signed by the CA; the certificate's path."""
    key, csr, crt = (root / f"{stem}{s}" for s in (".key", ".csr", ".crt"))
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={cn}",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        str(crt),
        *(["-extfile", str(ext)] if ext else []),
    )
    return crt


def make_ca(root: Path, name: str = "ca") -> dict[str, Path]:
    """A self-signed CA, and a server certificate for 127.0.0.1 and a client certificate
    signed by it (openssl CLI)."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca = root / f"{name}.key", root / f"{name}.crt"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN=S3E test {name}",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    ext = root / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    server = _signed(root, f"{name}-server", "127.0.0.1", ca, ca_key, ext)
    client = _signed(root, f"{name}-client", "s3e-test-edge", ca, ca_key, None)
    return {
        "ca": ca,
        "cert": server,
        "key": server.with_suffix(".key"),
        "client_cert": client,
        "client_key": client.with_suffix(".key"),
    }

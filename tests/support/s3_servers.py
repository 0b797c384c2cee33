"""Real S3-compatible servers for the tests and benchmarks, on 127.0.0.1: OpenStack Swift with
s3api (on disk; checks signatures and Content-MD5), moto (in memory; checks little), and a
fault-injecting HTTP/1.1 proxy to put in front of either."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

SWIFT_HINT = (
    "OpenStack Swift is not installed: apt-get install swift swift-proxy swift-account "
    "swift-container swift-object python3-swift memcached"
)
_USER = pwd.getpwuid(os.geteuid()).pw_name  # the servers' `user` (not $USER, which may lie)
_BACKENDS = ("account", "container", "object")
_FILTERS = "catch_errors gatekeeper healthcheck listing_formats copy slo dlo versioned_writes"
_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth "
    "copy slo dlo versioned_writes proxy-logging proxy-server"
)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (not conftest's: conftest imports this module)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _content_md5(params: dict[str, Any], **_: Any) -> None:
    """Swift's s3api wants Content-MD5 on DeleteObjects; botocore >= 1.36 sends a CRC32 only."""
    body = params["body"].encode() if isinstance(params["body"], str) else params["body"]
    if isinstance(body, bytes | bytearray):
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        params["headers"]["Content-MD5"] = base64.b64encode(digest).decode()


def s3_client(
    endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1", **config_kw: Any
) -> Any:
    """A boto3 S3 client (its class is made at run time, hence Any) fit for non-AWS servers:
    path-style, checksums only where required, 2 attempts; `config_kw` overrides the Config."""
    options: dict[str, Any] = {
        "s3": {"addressing_style": "path"},
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "retries": {"total_max_attempts": 2},
    }
    keys = {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(**options | config_kw),
        **keys,
    )
    client.meta.events.register("before-call.s3.DeleteObjects", _content_md5)
    return client


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a process started in a session of its own, with anything it forked."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


class Swift:
    """Memcached and Swift account, container, object and proxy (s3api + tempauth) servers, one
    process each (`workers = 0`), configured once in `root`; logs in `root/*.log`."""

    access_key, secret_key, region = "test:tester", "testing", "us-east-1"

    def __init__(self, root: Path) -> None:
        bins = ["swift-ring-builder", "memcached", *(f"swift-{n}-server" for n in _BACKENDS)]
        if any(shutil.which(b) is None for b in [*bins, "swift-proxy-server"]):
            pytest.fail(SWIFT_HINT)
        self.root, self.etc, ports = root, root / "etc", root / "ports.json"  # written last
        names = (*_BACKENDS, "proxy", "memcache")
        self.ports: dict[str, int] = (
            json.loads(ports.read_text()) if ports.exists() else {n: free_port() for n in names}
        )
        self.endpoint = f"http://127.0.0.1:{self.ports['proxy']}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.start_seconds = 0.0

    def _configure(self) -> None:
        (self.root / "node" / "d1").mkdir(parents=True, exist_ok=True)
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "swift.conf").write_text(
            "[swift-hash]\nswift_hash_path_suffix = s3e-suffix\nswift_hash_path_prefix = s3e\n\n"
            "[storage-policy:0]\nname = gold\ndefault = yes\n"
        )
        default = (
            f"[DEFAULT]\nuser = {_USER}\nswift_dir = {self.etc}\n"
            f"devices = {self.root / 'node'}\nmount_check = false\nbind_ip = 127.0.0.1\n"
            "workers = 0\nbind_port = "
        )
        builders = []
        for name in _BACKENDS:
            port, ring = self.ports[name], f"swift-ring-builder {self.etc / name}.builder"
            (self.etc / f"{name}-server.conf").write_text(
                f"{default}{port}\n\n[pipeline:main]\npipeline = {name}-server\n\n"
                f"[app:{name}-server]\nuse = egg:swift#{name}\n\n"
                + "".join(f"[{name}-{s}]\n\n" for s in ("replicator", "updater", "auditor"))
            )
            script = (
                f"{ring} create 8 1 1; {ring} add r1z1-127.0.0.1:{port}/d1 100; {ring} rebalance"
            )
            builders.append(subprocess.Popen(script, shell=True, stdout=subprocess.DEVNULL))
        for name, builder in zip(_BACKENDS, builders, strict=True):
            builder.wait(60)
            if not (self.etc / f"{name}.ring.gz").exists():
                raise RuntimeError(f"swift-ring-builder made no {name} ring in {self.etc}")
        (self.etc / "proxy-server.conf").write_text(
            f"{default}{self.ports['proxy']}\n\n[pipeline:main]\npipeline = {_PIPELINE}\n\n"
            "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\n"
            "[filter:s3api]\nuse = egg:swift#s3api\nlocation = us-east-1\n\n"
            "[filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = testing .admin\n\n"
            "[filter:cache]\nuse = egg:swift#memcache\n"
            f"memcache_servers = 127.0.0.1:{self.ports['memcache']}\n\n"
            "[filter:proxy-logging]\nuse = egg:swift#proxy_logging\n\n"
            + "".join(f"[filter:{f}]\nuse = egg:swift#{f}\n\n" for f in _FILTERS.split())
        )
        (self.root / "ports.json").write_text(json.dumps(self.ports))

    def _spawn(self, name: str, *argv: str) -> None:
        with open(self.root / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

    def _ready(self) -> bool:
        try:
            for name in ("memcache", *_BACKENDS):
                socket.create_connection(("127.0.0.1", self.ports[name]), 0.5).close()
            with urllib.request.urlopen(f"{self.endpoint}/healthcheck", timeout=2) as response:
                return bool(response.read() == b"OK")
        except Exception:
            return False

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                logs = sorted(self.root.glob("*.log"))
                tails = "".join(f"\n--- {f.name}:\n{f.read_text('latin-1')[-1500:]}" for f in logs)
                raise RuntimeError(f"Swift did not come up (exited: {dead}){tails}")
            time.sleep(0.1)

    def start(self) -> Swift:
        started = time.monotonic()
        if not (self.root / "ports.json").exists():
            self._configure()
        # memcached refuses to run as root without -u (and ignores it otherwise)
        port = str(self.ports["memcache"])
        self._spawn("memcache", "memcached", "-l", "127.0.0.1", "-p", port, "-U", "0", "-u", _USER)
        for name in (*_BACKENDS, "proxy"):
            self._spawn(name, f"swift-{name}-server", str(self.etc / f"{name}-server.conf"), "-v")
        self._wait_ready()
        self.start_seconds = time.monotonic() - started
        return self

    def stop_proxy(self) -> None:
        """The S3 endpoint goes down (connections refused); the storage servers stay up."""
        _kill(self.procs.pop("proxy", None))

    def start_proxy(self) -> None:
        """The S3 endpoint comes back, on the same port."""
        self._spawn("proxy", "swift-proxy-server", str(self.etc / "proxy-server.conf"), "-v")
        self._wait_ready()

    def stop(self) -> None:
        for name in ("proxy", *_BACKENDS, "memcache"):
            _kill(self.procs.pop(name, None))

    def client(self, **config_kw: Any) -> Any:
        return s3_client(self.endpoint, self.access_key, self.secret_key, self.region, **config_kw)


class Moto:
    """moto's S3 in a thread of this process (in memory; takes any secret, MD5 or checksum)."""

    access_key, secret_key, region = "testing", "testing", "us-east-1"

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> Moto:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        if (wsgi := getattr(self.server, "_server", None)) is not None:
            wsgi.server_close()

    def client(self, **config_kw: Any) -> Any:
        return s3_client(self.endpoint, self.access_key, self.secret_key, self.region, **config_kw)


def _read_head(f: io.BufferedReader) -> bytes | None:
    """A message head (start line, headers, blank line); None at EOF before it."""
    lines: list[bytes] = []
    while line := f.readline(65536):
        if line.strip():
            lines.append(line)
        elif lines:
            return b"".join(lines) + line
    if lines:
        raise ConnectionError("connection closed inside a message head")
    return None


def _parse(head: bytes) -> tuple[list[str], dict[str, str]]:
    first, *rest = head.decode("latin-1").splitlines()
    fields = (line.split(":", 1) for line in rest if ":" in line)
    return first.split(" ", 2), {k.strip().lower(): v.strip() for k, v in fields}


def _read_body(f: io.BufferedReader, headers: dict[str, str], to_eof: bool = False) -> bytes:
    """The raw body: chunked (kept chunked), by Content-Length, or to EOF (responses)."""

    def exactly(n: int) -> bytes:
        if len(data := f.read(n)) < n:
            raise ConnectionError("connection closed inside a message body")
        return data

    if "chunked" in headers.get("transfer-encoding", "").lower():
        raw = bytearray()
        while size := int((line := f.readline(65536)).split(b";")[0].strip() or b"0", 16):
            raw += line + exactly(size + 2)
        raw += line
        while (line := f.readline(65536)).strip():  # trailers, then the blank line
            raw += line
        return bytes(raw + line)
    if "content-length" in headers:
        return exactly(int(headers["content-length"]))
    return f.read() if to_eof else b""


def _send(sock: socket.socket, data: bytes, delay_s: float, chunk: int) -> None:
    step = chunk if delay_s > 0 else max(len(data), 1)
    for i in range(0, len(data), step):
        sock.sendall(data[i : i + step])
        time.sleep(delay_s)


def _error(mode: str) -> bytes:
    status, code = {
        "500": ("500 Internal Server Error", "InternalError"),
        "503": ("503 Slow Down", "SlowDown"),
    }[mode]
    body = f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code><Message>injected"
    body += "</Message></Error>"
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode()


class _Upstream:
    """One keep-alive connection to the server, reopened when the server has closed it."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.sock: socket.socket | None = None
        self.file: io.BufferedReader | None = None

    def close(self) -> None:
        for thing in (self.file, self.sock):
            if thing is not None:
                thing.close()
        self.sock = self.file = None

    def exchange(self, request: bytes, method: str, delay: float, chunk: int) -> tuple[int, bytes]:
        """Send a request; the response's status and raw bytes."""
        while True:
            fresh = self.sock is None
            if self.sock is None or self.file is None:
                self.sock = socket.create_connection(self.addr, 60)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.file = self.sock.makefile("rb")
            try:
                _send(self.sock, request, delay, chunk)
                while (head := _read_head(self.file)) is not None and head[9:10] == b"1":
                    pass  # 100 Continue and the like
                if head is not None:
                    break
                raise ConnectionError("the server closed the connection")
            except OSError:
                self.close()
                if fresh:  # else the kept-alive connection had gone stale: retry on a new one
                    raise
        (_, status, *_), headers = _parse(head)
        framed = "content-length" in headers or "chunked" in headers.get("transfer-encoding", "")
        no_body = method == "HEAD" or status in ("204", "304")
        body = b"" if no_body else _read_body(self.file, headers, to_eof=True)
        if not (framed or no_body) or "close" in headers.get("connection", "").lower():
            self.close()
        return int(status), head + body


MODES = ("none", "refuse", "down", "500", "503", "cut", "slow")


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of `upstream` ((host, port) or a URL), request by
    request, that injects faults (see `fault`). `requests` logs (method, path?query, status) of
    each request answered, before the answer goes out, faulted ones included (a cut one logs
    minus the status the server gave, which the client never saw; 0: the upstream could not
    be reached); `refused` counts connections
    closed by "refuse"; `faulted` the requests faulted since the last `fault()`."""

    def __init__(self, upstream: tuple[str, int] | str) -> None:
        if isinstance(upstream, str):
            url = urlsplit(upstream)
            upstream = (url.hostname or "127.0.0.1", url.port or 80)
        self.upstream, self.port = upstream, free_port()
        self.requests: list[tuple[str, str, int]] = []
        self.errors: list[BaseException] = []  # unexpected exceptions in connection threads
        self.refused, self.lock, self._stopped = 0, threading.Lock(), True
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.fault("none")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fault(
        self,
        mode: str,
        every: int = 1,
        times: int | None = None,
        delay_s: float = 0.05,
        chunk: int = 1024,
    ) -> None:
        """From now on: "none" passes all; "refuse" closes open and new connections; "down"
        closes open ones and the port (connections refused; `every`, `times` do not apply);
        "500" / "503" answer InternalError / SlowDown, not forwarding; "cut" forwards the request
        and closes the connection instead of relaying the response; "slow" relays both ways in
        `chunk`-byte pieces `delay_s` apart. Every `every`-th request, `times` of them at most."""
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}: one of {MODES}")
        with self.lock:
            self.mode, self.every, self.times = mode, every, times
            self.delay_s, self.chunk, self.seen, self.faulted = delay_s, chunk, 0, 0
        if mode in ("refuse", "down"):
            self._drop_clients()
        if mode == "down" and self._acceptor is not None:
            self._listener = None  # the accept loop closes it and ends
            self._acceptor.join(5)
        elif self._listener is None and not self._stopped:
            self._listen()

    def _decide(self) -> str:
        with self.lock:
            if self.mode != "none":
                self.seen += 1
                if not self.seen % self.every and (self.times is None or self.faulted < self.times):
                    self.faulted += 1
                    return self.mode
            return "none"

    def count(self, method: str, path_contains: str = "", status: int | None = None) -> int:
        with self.lock:
            log = [(m, p) for m, p, s in self.requests if status in (None, s)]
        return sum(m == method and path_contains in p for m, p in log)

    def _log(self, method: str, target: str, status: int) -> None:
        with self.lock:
            self.requests.append((method, target, status))

    def _drop_clients(self) -> None:
        with self.lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def _spawn(self, target: Callable[..., None], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True, name="fault-proxy")
        thread.start()
        with self.lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        return thread

    def start(self) -> FaultProxy:
        self._stopped = False
        self._listen()
        return self

    def _listen(self) -> None:
        listener = self._listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._acceptor = self._spawn(self._accept_loop, listener)

    def _accept_loop(self, listener: socket.socket) -> None:
        with listener:
            while self._listener is listener and not self._stopped:
                with contextlib.suppress(TimeoutError):
                    client, _ = listener.accept()
                    if (first := self._decide() if self.mode == "refuse" else None) == "refuse":
                        with self.lock:
                            self.refused += 1
                        client.close()
                        continue
                    client.settimeout(None)
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with self.lock:
                        self._clients.add(client)
                    self._spawn(self._serve, client, first)

    def _serve(self, client: socket.socket, first: str | None) -> None:
        upstream, reader = _Upstream(self.upstream), client.makefile("rb")
        try:
            while (head := _read_head(reader)) is not None:
                (method, target, *_), headers = _parse(head)
                mode, first = first or self._decide(), None
                delay_s, chunk = (self.delay_s if mode == "slow" else 0.0), self.chunk
                expect = headers.get("expect", "").lower() == "100-continue"
                if mode in ("refuse", "down"):
                    with self.lock:
                        self.refused += 1
                    return
                if mode in ("500", "503"):
                    if not expect:  # (with Expect, the client waits for us to send the body)
                        _read_body(reader, headers)
                    self._log(method, target, int(mode))
                    return client.sendall(_error(mode))
                if expect:  # answered here: the server is not asked
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    lines = head.splitlines(keepends=True)
                    head = b"".join(x for x in lines if not x.lower().startswith(b"expect:"))
                request = head + _read_body(reader, headers)
                try:
                    status, response = upstream.exchange(request, method, delay_s, chunk)
                except OSError:
                    status, response = 0, b""
                self._log(method, target, -status if mode == "cut" else status)
                if mode == "cut" or not status:
                    return
                _send(client, response, delay_s, chunk)
                if upstream.sock is None or "close" in headers.get("connection", "").lower():
                    return
        except (OSError, ValueError):
            pass  # the client went away, or spoke garbage
        except Exception as exc:
            self.errors.append(exc)
        finally:
            with self.lock:
                self._clients.discard(client)
            upstream.close()
            reader.close()
            client.close()

    def stop(self) -> None:
        self._stopped = True
        self._drop_clients()
        for thread in list(self._threads):
            thread.join(10)


@pytest.fixture(scope="session")
def swift(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swift]:
    server = Swift(tmp_path_factory.mktemp("swift")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Moto]:
    server = Moto().start()
    yield server
    server.stop()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str], FaultProxy]]:
    """A factory: `fault_proxy(endpoint)` is a started FaultProxy in front of it."""
    proxies: list[FaultProxy] = []

    def make(upstream_endpoint: str) -> FaultProxy:
        proxies.append(FaultProxy(upstream_endpoint).start())
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.stop()


def new_bucket(server: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=name)
    return name


def s3_section(server: Any, bucket: str, endpoint: str = "", **more: Any) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "endpoint_url": endpoint or server.endpoint,
        "region": server.region,
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
        "addressing_style": "path",
        "backoff_min_s": 0.05,
        "backoff_max_s": 0.5,
        "attempts": 3,
        "connect_timeout_s": 2,
        "read_timeout_s": 10,
        **more,
    }

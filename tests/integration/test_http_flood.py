"""A flood of oversized request bodies against a daemon process, as one unauthenticated client
on the network could send it: many at once, to every route that reads a body, their size
declared or streamed chunked. The daemon refuses each before reading past its limit, its peak
memory stays where it was, and it goes on answering."""

from __future__ import annotations

import concurrent.futures as cf
import select
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.common import free_port, wait_until
from support.processes import healthy, start, write_config

BODY_MB = 128
"""What each flooding request would send if let: one such body read in full is over the bound."""
PEAK_GROWTH_MB = 48
CHUNK = b"[" * (1 << 20)


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key}")


@pytest.fixture
def flood_daemon(tmp_path: Path) -> Any:
    """A daemon with no token (every body-reading route reachable) and a 1 MB upload cap."""
    port = free_port()
    (tmp_path / "inbox").mkdir()
    config = write_config(tmp_path, port, upload="[capture.upload]\nmax_bytes = 1048576\n")
    proc = start(config, tmp_path / "log.txt")
    try:
        wait_until(lambda: healthy(port), 90, "daemon up")
        yield {"proc": proc, "port": port}
    finally:
        proc.terminate()
        proc.wait(30)


def flood_one(port: int, path: str, content_type: str, chunked: bool) -> tuple[bytes, int]:
    """Send up to BODY_MB of body until the server answers or closes; (the answer's first
    bytes, how many body bytes went out)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY_MB * len(CHUNK)}"
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"X-S3E-Request: 1\r\n{framing}\r\n\r\n".encode()
    )
    piece = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
    sent = 0
    try:
        while sent < BODY_MB * len(CHUNK) and not select.select([s], [], [], 0)[0]:
            s.sendall(piece)
            sent += len(CHUNK)
    except OSError:  # the server closed the connection mid-body: it read no further
        pass
    try:
        answer = s.recv(64)  # what it said before closing, if it is still there to read
    except OSError:
        answer = b""
    finally:
        s.close()
    return answer, sent


def test_a_flood_of_oversized_bodies_leaves_memory_where_it_was(flood_daemon: dict[str, Any]):
    """One request used to be able to make the daemon hold its whole body (hundreds of MB):
    now 32 at once, each BODY_MB, declared or chunked, at /login, /admin/bundle and
    /images, leave the daemon's peak memory within PEAK_GROWTH_MB of its resident size."""
    pid, port = flood_daemon["proc"].pid, flood_daemon["port"]
    targets = [
        (path, kind, chunked)
        for path, kind in (
            ("/login", "application/json"),
            ("/admin/bundle", "application/json"),
            ("/images", "application/octet-stream"),
        )
        for chunked in (False, True)
    ]
    jobs = [targets[i % len(targets)] for i in range(32)]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak from here on
    before = status_mb(pid, "VmRSS")
    with cf.ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: flood_one(port, *job), jobs))
    peak = status_mb(pid, "VmHWM")
    assert peak - before < PEAK_GROWTH_MB, f"peak {peak:.0f} MB from {before:.0f} MB"
    answers = [a for a, _ in results if a]
    assert all(a.startswith(b"HTTP/1.1 413 ") for a in answers), answers
    said_413 = {job for job, (a, _) in zip(jobs, results, strict=True) if a}
    assert said_413 == set(targets), f"no 413 from {set(targets) - said_413}"
    assert max(sent for _, sent in results) < BODY_MB * len(CHUNK) // 4
    assert healthy(port)

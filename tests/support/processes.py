"""`s3e-edge` as a separate process: its config file, starting it, and reading its state
from outside (its health, its database)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from support.common import ROOT

EDGE = [sys.executable, "-m", "edge.cli"]
INDEXED = "status='analysed' AND seq NOT IN (SELECT seq FROM due WHERE sink='index')"
"""Records the index has (analysed, and no longer due for the index sink)."""


def write_config(tmp: Path, port: int, **extra: str) -> Path:
    lines = [
        'device_id = "proc-edge"',
        f'data_dir = "{tmp / "data"}"',
        "[model]",
        'accelerator = "cpu"',
        "threads = 1",
        "workers = 1",
        "[capture.folder]",
        f'path = "{tmp / "inbox"}"',
        "settle_s = 0.1",
        "poll_interval_s = 0.2",
        "[index]",
        "commit_every = 4",
        "commit_interval_s = 0.2",
        "[http]",
        f"port = {port}",
    ]
    path = tmp / "edge.toml"
    path.write_text("\n".join(lines) + "\n" + "\n".join(extra.values()))
    return path


def start(config: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*EDGE, "run", "--config", str(config)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def db_count(data: Path, where: str) -> int:
    db = data / "records.sqlite3"
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
        try:
            return int(c.execute(f"SELECT COUNT(*) FROM records WHERE {where}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def children(pid: int) -> list[int]:
    """The child processes of every thread of `pid`; a thread that ends while they are read
    has none."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return out


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False

"""What every test module may need: the project's root, a free port, waiting on a condition."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    what: str | Callable[[], str] = "",
    every: float = 0.05,
) -> None:
    """Poll `predicate()` every `every` seconds until it is truthy; fail after `timeout`
    seconds with `what` (called then, when it is a function: the state that was waited on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout}s waiting for {said or predicate}")
        time.sleep(every)

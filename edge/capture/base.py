"""The one interface every capture source implements."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

Submit = Callable[[bytes, str, str], str]
"""(image bytes, source key, name) -> record id; raises `ImageRejectedError` for bad input and
`OSError` when the store cannot take it now (the source keeps the image and retries)."""

Reject = Callable[[Path, str, str], None]
"""(file, kind, reason): move a refused file into `rejected/` beside a reason file."""


class CaptureSource(Protocol):
    """Built with (its config section, submit, reject); `enabled(section)` says whether the
    config turns it on."""

    key: str

    @property
    def threads(self) -> list[threading.Thread]:
        """Threads that must stay alive while the source runs (the daemon's health check)."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

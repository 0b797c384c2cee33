"""Logging set-up: one readable line per event, or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


class RateLimit(logging.Filter):
    """At most `burst` lines per `window_s` of one message (logger and format string) at
    warning or above; the rest are counted, and the count rides on the first line of the next
    window. A fault that repeats in a tight loop cannot fill the disk with log lines."""

    def __init__(self, burst: int = 10, window_s: float = 10.0) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._seen: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 1000:
                self._seen.clear()
            start, count, dropped = self._seen.get(key, [now, 0.0, 0.0])
            if now - start > self.window_s:
                if dropped:
                    record.msg = f"{record.msg} [{int(dropped)} similar lines suppressed]"
                start, count, dropped = now, 0.0, 0.0
            count += 1
            keep = count <= self.burst
            self._seen[key] = [start, count, dropped + (not keep)]
        return keep


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RateLimit())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

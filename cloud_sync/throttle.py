"""The upload bandwidth cap: one token bucket shared by every upload thread, so the cap holds
for the device as a whole whatever the concurrency."""

from __future__ import annotations

import io
import threading
import time


class RateLimiter:
    """`rate` bytes a second, with a burst of a quarter second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(64 * 1024, rate / 4)
        self._tokens = self.burst
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        """Wait until `n` bytes may go. Debt is allowed, so a large read waits its full time
        once instead of starving behind smaller ones."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class ThrottledBody(io.BytesIO):
    """A request body that asks the limiter before handing bytes to the socket. Seekable, so
    botocore can rewind it; reads come in the HTTP client's small blocks."""

    def __init__(self, data: bytes, limiter: RateLimiter) -> None:
        super().__init__(data)
        self.limiter = limiter

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.limiter.take(len(chunk))
        return chunk

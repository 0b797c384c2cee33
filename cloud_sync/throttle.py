"""The upload bandwidth cap: one token bucket shared by every upload thread, so the cap holds
for the device as a whole whatever the concurrency. Taken per request body (an object or a
part) before it goes: the average holds, a single part still leaves at the link's pace."""

from __future__ import annotations

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

    def refund(self, n: int) -> None:
        """Give back what a failed request took: an outage must not leave the cap in debt."""
        with self._lock:
            self._tokens = min(self.burst, self._tokens + n)

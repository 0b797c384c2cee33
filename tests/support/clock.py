"""A clock a test moves by hand, for code that takes one (`Daemon(cfg, clock=...)`): a cache's
age or a timeout is then reached by advancing it, not by sleeping."""

from __future__ import annotations


class FakeClock:
    """Monotonic seconds that stand still until `advance` moves them on."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

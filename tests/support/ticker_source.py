"""A capture source added by one file: it draws `count` images, one every `interval_s`, and
hands them to the ingestor. Its config model sits beside it."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from edge.capture.base import Ingest, Reject


class TickerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(0, ge=0, description="images to draw; 0 = off")
    interval_s: float = Field(0.05, gt=0)


class TickerSource:
    key = "ticker"
    Config = TickerConfig

    def __init__(self, cfg: TickerConfig, ingestor: Ingest, reject: Reject) -> None:
        self.cfg, self.ingestor = cfg, ingestor
        self.taken: list[str] = []
        self.beat = time.monotonic()
        self.stall_after_s = 60.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture-ticker", daemon=True)

    @staticmethod
    def enabled(cfg: TickerConfig) -> bool:
        return cfg.count > 0

    @property
    def threads(self) -> list[threading.Thread]:
        return [self._thread] if self._thread.is_alive() else []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def commands(self) -> dict[str, Any]:
        return {}

    def _run(self) -> None:
        rng = np.random.default_rng(7)
        for i in range(self.cfg.count):
            if self._stop.wait(self.cfg.interval_s):
                return
            self.beat = time.monotonic()
            pixels = rng.integers(0, 255, (64, 64), dtype=np.uint8)
            out = io.BytesIO()
            Image.fromarray(pixels, "L").save(out, format="PNG")
            got = self.ingestor.ingest(out.getvalue(), "ticker", f"tick-{i}.png")
            self.taken.append(got.id)

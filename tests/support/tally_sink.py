"""A sink added by one file: its config section, its part, and the records it was given.
It refuses records whose source name is in `refuse`, to show them set aside."""

from __future__ import annotations

import threading
import time

from pydantic import BaseModel, ConfigDict, Field

from edge.config import EdgeConfig
from edge.parts import BasePart
from edge.sinks.plugin import Context
from edge.sinks.worker import RecordsRefusedError, SinkWorker
from edge.store.records import Record


class TallyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    refuse: list[str] = Field(default_factory=list, description="source names to refuse")


class TallySink:
    name = "tally"

    def __init__(self, cfg: TallyConfig) -> None:
        self.cfg = cfg
        self.delivered: list[str] = []

    def deliver(self, records: list[Record]) -> list[str]:
        refused = {r.id: "refused by name" for r in records if r.source_name in self.cfg.refuse}
        done = [r.id for r in records if r.id not in refused]
        self.delivered += done
        if refused:
            raise RecordsRefusedError(done, refused)
        return done

    def reset(self) -> None:
        self.delivered.clear()


class TallyPart(BasePart):
    name = "tally"

    def __init__(self, cfg: TallyConfig, ctx: Context) -> None:
        self.sink = TallySink(cfg)
        self.worker = SinkWorker(ctx.store, self.sink, 8, 0.2, ctx.metrics, wake_after=1)
        ctx.hooks.on_analysed.append(self.worker.notify)

    def start(self) -> None:
        self.worker.start()

    def stop(self, deadline: float) -> None:
        self.worker.stop(max(1.0, deadline - time.monotonic()))

    @property
    def threads(self) -> list[threading.Thread]:
        return [self.worker.thread]


class TallyPlugin:
    key = "tally"
    Config = TallyConfig
    turned_on_by = "tally.enabled"

    def enabled(self, cfg: EdgeConfig) -> bool:
        return cfg.section(self.key, TallyConfig).enabled

    def build(self, cfg: EdgeConfig, ctx: Context) -> TallyPart:
        return TallyPart(cfg.section(self.key, TallyConfig), ctx)


plugin = TallyPlugin()

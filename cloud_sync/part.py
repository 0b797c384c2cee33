"""Cloud sync as a sink plug-in of the daemon: found through the `s3e.sinks` entry point, its
`[s3]` section validated by `S3Config`, built into a part when `s3.bucket` is set. The daemon
never names it: it registers the `s3` sink, adds `urls.s3` to events, redirects requests for
evicted originals to presigned URLs, and fetches them back for a re-analysis.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from cloud_sync.config import S3Config
from cloud_sync.keys import original_key, thumbnail_key
from cloud_sync.service import SyncService
from edge.config import EdgeConfig
from edge.parts import BasePart
from edge.sinks.plugin import Context
from edge.store.records import Record


class S3Part(BasePart):
    name = "s3"

    def __init__(self, cfg: S3Config, ctx: Context) -> None:
        """Raises ValueError for credentials boto3 cannot set up (an unknown profile)."""
        self.cfg = cfg
        self.service = SyncService(cfg, ctx.store, ctx.metrics)
        ctx.hooks.event_urls.append(self._urls)
        ctx.hooks.original_url = self.service.presign
        ctx.hooks.fetch_original = self.service.fetch
        ctx.hooks.on_analysed.append(self.service.worker.notify)
        ctx.metrics.gauge(
            "s3e_queue_sync",
            "Analysed records whose original or sidecar is not yet verified in S3",
            lambda: ctx.store.count_due("s3"),
        )

    def _urls(self, r: Record) -> dict[str, Any]:
        bucket, prefix = self.cfg.bucket, self.cfg.prefix
        return {
            "s3": f"s3://{bucket}/{original_key(prefix, r)}",
            "s3_thumbnail": f"s3://{bucket}/{thumbnail_key(prefix, r)}",
        }

    def start(self) -> None:
        self.service.start()

    def stop(self, deadline: float) -> None:
        self.service.stop(max(1.0, deadline - time.monotonic()))

    @property
    def threads(self) -> list[threading.Thread]:
        return [self.service.worker.thread]

    def health(self) -> dict[str, Any]:
        return self.service.summary()


class S3Plugin:
    key = "s3"
    Config = S3Config
    turned_on_by = "s3.bucket"

    def enabled(self, cfg: EdgeConfig) -> bool:
        return cfg.section(self.key, S3Config).enabled

    def build(self, cfg: EdgeConfig, ctx: Context) -> S3Part:
        return S3Part(cfg.section(self.key, S3Config), ctx)


plugin = S3Plugin()

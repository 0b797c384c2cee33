"""The daemon: a list of parts built from the config, started in order and stopped in reverse
against one deadline (`shutdown_timeout_s`), on SIGTERM or SIGINT.

Parts, in start order: the sinks (`edge.sinks.registry`: the search index always, MQTT when
`mqtt.host` is set, cloud sync when `s3.bucket` is set, any other installed), the analysis
pool, HTTP, and the capture sources last, so nothing comes in before everything that takes it
runs; on stop, capture ends first and the sinks last, so they deliver what the analysis
finished. `/healthz`, the watchdog and the MQTT `stats` are built from the list; the parts'
commands (`ping`, `reindex`, `bundle`, a camera's `capture`) are served over MQTT and the
admin API alike. Whatever was accepted but not analysed or delivered stays in the store.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.analysis.bundle import Bundle, load_bundle
from edge.analysis.pool import AnalysisPool
from edge.analysis.runtime import NO_GPU
from edge.analysis.swap import BundleSwapper, StartupError, start_analysers
from edge.api.context import ApiContext
from edge.api.server import HttpPart
from edge.capture import CaptureSource, enabled_sources
from edge.capture.folder import reject_file
from edge.config import EdgeConfig
from edge.ingest.ingestor import Ingestor
from edge.metrics import Metrics
from edge.parts import Command, Hooks, Part
from edge.sdnotify import notify, watchdog_interval
from edge.search.device import DeviceBackend
from edge.search.engine import SearchEngine
from edge.search.indexes import Indexes
from edge.search.related import RelatedTables
from edge.search.semantic import Encoders
from edge.sinks.plugin import Context
from edge.sinks.registry import sink_plugins
from edge.store.store import Store

log = logging.getLogger("s3e.daemon")
HEALTH_TTL_S = 2.0


class Daemon:
    """Also the `Services` its parts are built with (`edge.sinks.plugin`)."""

    def __init__(self, cfg: EdgeConfig, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock`: what the health document's age is measured with (monotonic seconds); a
        test moves one by hand to see the cache expire."""
        self.cfg = cfg
        self._clock = clock
        self.started_at = time.time()
        self.stopping = threading.Event()
        self._health_lock = threading.Lock()
        self._health: tuple[float, dict[str, Any] | None] = (0.0, None)
        bundles = [self._load("bundle", cfg.model.bundle)]
        if cfg.model.catch_all:
            bundles.append(self._load("catch_all", cfg.model.catch_all))
        self.store = Store(cfg.data_dir, cfg.device_id)
        self.metrics = Metrics()
        self.hooks = Hooks()
        self.parts: list[Part] = []
        self._running: list[Part] = []
        try:
            self._build(bundles)
        except BaseException:
            for part in reversed(self.parts):
                part.stop(time.monotonic() + 5)
            self.store.close()
            raise

    @staticmethod
    def _load(key: str, ref: str) -> Bundle:
        try:
            return load_bundle(ref)
        except ValueError as e:
            raise StartupError(f"model.{key}: {e}") from None

    def _build(self, bundles: list[Bundle]) -> None:
        cfg = self.cfg
        analysers = start_analysers(bundles, cfg.model)
        reason = analysers[0].fallback_reason
        if reason and reason != NO_GPU:  # without a GPU, the CPU is what "auto" means
            log.warning("GPU not used, running on the CPU: %s", reason)
        specs = [b.doc.preprocessing for b in bundles]
        self.ingestor = Ingestor(self.store, specs, cfg, self.metrics, self.hooks)
        self.pool = AnalysisPool(
            self.store,
            self.ingestor,
            analysers,
            self.metrics,
            self._analysed,
            cfg.reanalysis.share,
            on_caught_up=self._caught_up,
        )
        self.swapper = BundleSwapper(self.pool, cfg.model)
        self.indexes = Indexes(
            self.store,
            Path(cfg.data_dir),
            cfg.index.heap_mb,
            lambda: self.pool.bundle.version,
            lambda: self.pool.bundles[-1].version if len(self.pool.bundles) > 1 else "",
        )
        ctx = Context(cfg, self.store, self.metrics, self.hooks, self.indexes, self)
        for plugin in sink_plugins():
            if not plugin.enabled(cfg):
                log.info("%s off (%s is not set)", plugin.key, plugin.turned_on_by)
                continue
            try:
                self.parts.append(plugin.build(cfg, ctx))
            except (ValueError, RuntimeError) as e:
                raise StartupError(f"{plugin.key}: {e}") from None
        self.parts.append(self.pool)
        self.http: HttpPart | None = None
        if cfg.http.enabled:
            self.http = HttpPart(cfg.http, self._api_context())
            self.parts.append(self.http)
        sources = enabled_sources(cfg, self.ingestor, self._reject)
        self.sources = [SourcePart(s) for s in sources]
        self.parts += self.sources
        self.metrics.gauge(
            "s3e_queue_analysis", "Images accepted, not yet analysed", self.store.count_pending
        )
        self.metrics.gauge(
            "s3e_reanalysis_left",
            "Records of older bundles to re-analyse",
            lambda: self.pool.progress()["left"],
        )

    def _api_context(self) -> ApiContext:
        encoders = Encoders(lambda: self.pool.bundle)
        backend = DeviceBackend(self.indexes.keyword, self.indexes.profile, self.store)
        return ApiContext(
            cfg=self.cfg,
            store=self.store,
            search=SearchEngine(backend, encoders, RelatedTables(lambda: self.pool.bundles)),
            encoders=encoders,
            latents=self.indexes.latents,
            metrics=self.metrics,
            health=self.health,
            hooks=self.hooks,
            ingestor=self.ingestor,
            swap=self.swapper.swap,
        )

    @property
    def bundle(self) -> Bundle:
        """The bundle analysing new images now."""
        return self.pool.bundle

    def base_url(self) -> str:
        """How clients reach the HTTP API (`http.host` and the bound port)."""
        http = self.cfg.http
        return self.http.url if self.http is not None else f"http://{http.host}:{http.port}"

    def part(self, name: str) -> Part | None:
        return next((p for p in self.parts if p.name == name), None)

    @property
    def port(self) -> int | None:
        return self.http.port if self.http is not None else None

    def _analysed(self) -> None:
        for hook in self.hooks.on_analysed:
            hook()

    def _caught_up(self) -> None:
        for hook in self.hooks.on_caught_up:
            hook()

    def _reject(self, path: Path, kind: str, reason: str) -> None:
        reject_file(Path(self.cfg.data_dir), path, kind, reason)
        self.metrics.errors.labels(kind).inc()

    # -- commands ----------------------------------------------------------------------------
    def commands(self) -> dict[str, Command]:
        out: dict[str, Command] = {"ping": self._cmd_ping, "bundle": self._cmd_bundle}
        for part in self.parts:
            for name, cmd in part.commands().items():
                out[name] = _both(out[name], cmd) if name in out else cmd
        return out

    def _cmd_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "uptime_s": round(time.time() - self.started_at, 1)}

    def _cmd_bundle(self, request: dict[str, Any]) -> dict[str, Any]:
        ref = request.get("bundle")
        if not isinstance(ref, str) or not ref:
            raise ValueError('send {"bundle": "<shipped name or folder>"}')
        return self.swapper.swap(ref)

    # -- health ------------------------------------------------------------------------------
    def dead_threads(self) -> list[str]:
        """Threads of running parts that died (they log why), and capture sources whose loop
        stopped coming round (stuck in a read)."""
        dead = [
            t.name
            for p in self._running
            for t in p.threads
            if t.ident is not None and not t.is_alive()
        ]
        return dead + [
            f"capture-{s.source.key} (stalled)"
            for s in self.sources
            if s in self._running and s.stalled()
        ]

    def health(self) -> dict[str, Any]:
        """The health document, computed at most once every HEALTH_TTL_S: counting a large
        store takes its lock, and a client looping on /healthz must not slow ingest."""
        with self._health_lock:
            at, doc = self._health
            if doc is None or self._clock() - at > HEALTH_TTL_S or self.stopping.is_set():
                doc = self._compute_health()
                self._health = (self._clock(), doc)
            return doc

    def _compute_health(self) -> dict[str, Any]:
        dead = self.dead_threads()
        status = "stopping" if self.stopping.is_set() else "degraded" if dead else "ok"
        analysis = self.pool.health()
        return {
            "status": status,
            "dead_threads": dead,
            "device_id": self.cfg.device_id,
            "uptime_s": round(time.time() - self.started_at, 1),
            "bundle": analysis["bundle"],
            "catch_all": analysis["catch_all"],
            "runtime": analysis["runtime"],
            "accelerator": {
                "requested": self.cfg.model.accelerator,
                "models": analysis["placement"],
                "fallback_reason": analysis["fallback_reason"],
            },
            "reanalysis": analysis["reanalysis"],
            "records": self.store.counts(),
            "index_documents": self.indexes.keyword.num_docs,
            "mqtt": mqtt.health() if (mqtt := self.part("mqtt")) else None,
            "parts": {p.name: p.health() for p in self.parts if p.name not in ("analysis",)},
            "capture": [s.source.key for s in self.sources]
            + (["upload"] if self.cfg.capture.upload.enabled else []),
        }

    def stats(self) -> dict[str, Any]:
        """What `<prefix>/<device>/stats` says (retained, every `mqtt.stats_interval_s`)."""
        c = self.store.counts()
        total, used, free = shutil.disk_usage(self.cfg.data_dir)
        return {
            "images_processed": c.get("analysed", 0),
            "images_failed": c.get("failed", 0),
            "queues": {
                "analysis": c.get("pending", 0),
                **{k.removeprefix("due_"): v for k, v in c.items() if k.startswith("due_")},
            },
            "reanalysis": self.pool.progress(),
            "latency_ms": self.metrics.stage_means_ms(),
            "disk": {"total_bytes": total, "used_bytes": used, "free_bytes": free},
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    # -- life --------------------------------------------------------------------------------
    def start(self) -> None:
        log.info(
            "device %s: bundle %s (%s) on %s, data in %s",
            self.cfg.device_id,
            self.pool.version,
            self.pool.bundle.precision,
            ",".join(sorted(set(self.pool.analysers[0].placement.values()))),
            Path(self.cfg.data_dir).resolve(),
        )
        _raise_open_files_limit()
        orphans = self.store.sweep_orphans()
        if orphans:
            log.warning(
                "removed %d stored files no record names (left by a kill mid-upload)", orphans
            )
        counts = self.store.counts()
        if counts.get("pending") or counts.get("due_index"):
            log.info(
                "resuming: %d images to analyse, %d records to index",
                counts.get("pending", 0),
                counts.get("due_index", 0),
            )
        for part in self.parts:
            try:
                part.start()
            except RuntimeError as e:
                raise StartupError(f"{part.name}: {e}") from None
            self._running.append(part)
        notify("READY=1", f"STATUS=serving; {counts.get('analysed', 0)} images analysed")

    def stop(self) -> None:
        """Every running part in reverse start order, against one deadline."""
        self.stopping.set()
        notify("STOPPING=1")
        deadline = time.monotonic() + self.cfg.shutdown_timeout_s
        self.ingestor.closed = True
        for part in reversed(self._running):
            try:
                part.stop(deadline)
            except Exception:  # one part's trouble must not keep the others running
                log.exception("stopping %s", part.name)
        for part in self.parts:
            if part not in self._running:  # built but never started (a start failed)
                part.stop(time.monotonic() + 1)
        self.ingestor.close()
        self.store.close()
        log.info("stopped")

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; a second signal exits at once."""

        def on_signal(signum: int, _frame: Any) -> None:
            if self.stopping.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s: stopping", signal.Signals(signum).name)
            self.stopping.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        self.start()
        ping = watchdog_interval()
        last_ping = 0.0
        # Short waits: a signal delivered to another thread is only handled when the main
        # thread next runs Python code.
        while not self.stopping.wait(min(0.5, ping or 0.5)):
            if ping and time.monotonic() - last_ping >= ping:
                dead = self.dead_threads()
                if not dead:
                    notify("WATCHDOG=1")
                    last_ping = time.monotonic()
                else:  # no ping: systemd restarts us, and the store makes that lossless
                    log.error("worker threads died: %s; withholding the watchdog ping", dead)
        self.stop()
        return 0


class SourcePart:
    """A capture source as a part: its heartbeat says whether it is stuck."""

    def __init__(self, source: CaptureSource) -> None:
        self.source = source
        self.name = f"capture-{source.key}"

    def start(self) -> None:
        self.source.start()

    def stop(self, deadline: float) -> None:
        self.source.stop()

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self.source.threads)

    def stalled(self) -> bool:
        src = self.source
        return bool(src.threads) and time.monotonic() - src.beat > src.stall_after_s

    def health(self) -> dict[str, Any]:
        return {
            "beat_age_s": round(time.monotonic() - self.source.beat, 1),
            "stalled": self.stalled(),
        }

    def commands(self) -> dict[str, Command]:
        return self.source.commands()


def _both(a: Command, b: Command) -> Command:
    """Two parts offering one command (two cameras: `capture` triggers both)."""

    def run(request: dict[str, Any]) -> dict[str, Any]:
        return {**a(request), **b(request)}

    return run


def _raise_open_files_limit() -> None:
    """Up to the hard limit (at most 65536): idle clients must not exhaust descriptors
    before `http.max_connections` closes them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard if hard != resource.RLIM_INFINITY else 65536, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

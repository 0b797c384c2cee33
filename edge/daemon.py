"""The daemon: builds every part from the config, starts them in order, and stops them in
reverse on SIGTERM or SIGINT, within `shutdown_timeout_s`.

Start: store -> index -> analysers -> sinks (index, MQTT, S3) -> analysis pool -> HTTP ->
capture, then READY=1 to systemd. Stop: capture first (nothing new comes in), let the in-flight
analyses finish, commit the index, a last bounded MQTT and S3 pass, stop HTTP, release the
index lock. Whatever was accepted but not yet
analysed or indexed is still in the store, and is picked up at the next start.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from cloud_sync.service import SyncService
from edge.api import ApiContext, create_app
from edge.bundle import load_bundle
from edge.capture import CaptureSource, enabled_sources
from edge.capture.base import printable
from edge.capture.camera import CameraSource
from edge.config import EdgeConfig, HttpConfig
from edge.http_guard import GuardedH11Protocol
from edge.index import SearchIndex
from edge.metrics import Metrics
from edge.mqtt import Command, MqttService
from edge.pipeline import AnalysisPool, Ingestor
from edge.sdnotify import notify, watchdog_interval
from edge.similar import LatentNeighbours
from edge.sinks import IndexSink, SinkWorker
from edge.store import Store
from edge.worker import AnalyserProcess

log = logging.getLogger("s3e.daemon")


HEALTH_TTL_S = 2.0


class StartupError(RuntimeError):
    """The daemon cannot start; the message says which part and why."""


class HttpServer:
    """uvicorn in a thread of its own (so signals stay with the daemon), with deadlines for
    slow clients and caps on connections and requests in progress."""

    def __init__(self, app: Any, cfg: HttpConfig) -> None:
        config = uvicorn.Config(
            app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
            lifespan="off", timeout_graceful_shutdown=2, timeout_keep_alive=5,
            http=GuardedH11Protocol.configure(cfg),
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> int:
        """Start serving; the bound port (useful with port 0)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise StartupError("HTTP server did not start (is the port in use?)")
            time.sleep(0.02)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def reject_file(root: Path, path: Path, kind: str, reason: str) -> None:
    """Move a refused file into `rejected/` under a safe, short name, with
    `<name>.reason.txt` beside it holding the original name (escaped) and the reason."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", path.name).lstrip(".")[-100:] or "file"
    target = root / "rejected" / f"{stamp}-{safe}"
    n = 1
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        target = root / "rejected" / f"{stamp}-{n}-{safe}"
        n += 1
    shutil.move(str(path), target)
    target.with_name(target.name + ".reason.txt").write_text(
        f"file: {printable(str(path), 4096)}\nkind: {kind}\nreason: {reason}\n"
        f"rejected_at: {stamp}\n"
    )


class Daemon:
    def __init__(self, cfg: EdgeConfig) -> None:
        self.cfg = cfg
        self.started_at = time.time()
        self.stopping = threading.Event()
        self._health_lock = threading.Lock()
        self._health: tuple[float, dict[str, Any] | None] = (0.0, None)
        try:
            self.bundle = load_bundle(cfg.model.bundle)
        except ValueError as e:
            raise StartupError(f"model.bundle: {e}") from None
        self.store = Store(cfg.data_dir, cfg.device_id)
        self.metrics = Metrics()
        self.analysers: list[AnalyserProcess] = []
        try:
            self.index = SearchIndex(Path(cfg.data_dir) / "index", cfg.index.heap_mb)
        except BaseException:
            self.store.close()
            raise
        try:
            try:
                for _ in range(cfg.model.workers):
                    self.analysers.append(AnalyserProcess(self.bundle, cfg.model))
            except RuntimeError as e:
                raise StartupError(f"model.accelerator = {cfg.model.accelerator}: {e}") from None
            self.ingestor = Ingestor(self.store, self.bundle, cfg, self.metrics)
            try:
                self.sources = enabled_sources(cfg, self._submit, self._reject)
            except RuntimeError as e:
                raise StartupError(str(e)) from None
        except BaseException:
            self._close()
            raise
        if self.analysers[0].fallback_reason:
            log.warning("GPU not used, running on the CPU: %s", self.analysers[0].fallback_reason)
        self.index_worker = SinkWorker(
            self.store, IndexSink(self.index, self.metrics), cfg.index.commit_every,
            cfg.index.commit_interval_s, self.metrics,
        )  # fmt: skip
        self.mqtt: MqttService | None = None
        if cfg.mqtt.host:
            commands: dict[str, Command] = {
                "ping": self._cmd_ping,
                "reindex": self._cmd_reindex,
                "capture": self._cmd_capture,
            }
            try:
                self.mqtt = MqttService(cfg, self.store, self.metrics, commands, self.stats)
            except RuntimeError as e:
                self._close()
                raise StartupError(str(e)) from None
        else:
            log.info("MQTT publishing off (mqtt.host is empty)")
        self.sync: SyncService | None = None
        if cfg.s3.enabled:
            try:
                self.sync = SyncService(cfg.s3, self.store, self.metrics)
            except ValueError as e:
                self._close()
                raise StartupError(str(e)) from None
        else:
            log.info("cloud sync off (s3.bucket is empty)")
        sinks = [self.index_worker] + ([self.mqtt.worker] if self.mqtt else [])
        sinks += [self.sync.worker] if self.sync else []

        def analysed() -> None:
            for w in sinks:
                w.notify()

        self.pool = AnalysisPool(self.ingestor, self.analysers, self.metrics, analysed)
        self.neighbours = LatentNeighbours(self.store)
        self._running_sources: list[CaptureSource] = []
        self.http: HttpServer | None = None
        self.port: int | None = None
        m, index = self.metrics, self.index
        m.gauge("s3e_queue_analysis", "Images accepted, not yet analysed", self.store.count_pending)
        m.gauge("s3e_queue_index", "Analysed records not yet searchable",
                lambda: self.store.count_due("indexed"))  # fmt: skip
        m.gauge("s3e_index_documents", "Documents in the search index", lambda: index.num_docs)
        m.gauge("s3e_index_size_bytes", "Index size on disk", index.size_bytes)
        m.gauge("s3e_queue_publish", "Analysed records not yet acknowledged by the broker",
                lambda: self.store.count_due("published") if self.mqtt else 0)  # fmt: skip
        m.gauge("s3e_queue_sync", "Analysed records whose original is not yet verified in S3",
                lambda: self.store.count_due("synced") if self.sync else 0)  # fmt: skip

    def _submit(self, data: bytes, source: str, name: str) -> str:
        return self.ingestor.ingest(data, source, name).id

    def _reject(self, path: Path, kind: str, reason: str) -> None:
        reject_file(Path(self.cfg.data_dir), path, kind, reason)
        self.metrics.errors.labels(kind).inc()

    def dead_threads(self) -> list[str]:
        """Worker threads that should be running and are not (they log why before dying), and
        capture sources whose loop has stopped coming round (stuck in a read)."""
        threads = [*self.pool.threads, self.index_worker.thread]
        threads += self.mqtt.threads if self.mqtt else []
        threads += [self.sync.worker.thread] if self.sync else []
        threads += [t for s in self._running_sources for t in s.threads]
        if self.http is not None:
            threads.append(self.http.thread)
        dead = [t.name for t in threads if t.ident is not None and not t.is_alive()]
        now = time.monotonic()
        return dead + [f"capture-{s.key} (stalled)" for s in self._running_sources
                       if s.threads and now - s.beat > s.stall_after_s]  # fmt: skip

    def health(self) -> dict[str, Any]:
        """The health document, computed at most once every HEALTH_TTL_S: counting a large
        store takes its lock, and a client looping on /healthz must not slow ingest."""
        with self._health_lock:
            at, doc = self._health
            if doc is None or time.monotonic() - at > HEALTH_TTL_S or self.stopping.is_set():
                doc = self._compute_health()
                self._health = (time.monotonic(), doc)
            return doc

    def _compute_health(self) -> dict[str, Any]:
        models = self.analysers[0]
        dead = self.dead_threads()
        status = "stopping" if self.stopping.is_set() else "degraded" if dead else "ok"
        return {
            "status": status,
            "dead_threads": dead,
            "device_id": self.cfg.device_id,
            "uptime_s": round(time.time() - self.started_at, 1),
            "bundle": {"name": self.bundle.name, "precision": self.bundle.precision,
                       "domain": self.bundle.doc.get("domain")},
            "runtime": models.runtime,
            "accelerator": {"requested": self.cfg.model.accelerator,
                            "models": dict(models.placement),
                            "fallback_reason": models.fallback_reason or None},
            "records": self.store.counts(),
            "index_documents": self.index.num_docs,
            "mqtt": None if self.mqtt is None else {
                "broker": self.mqtt.link.where, "connected": self.mqtt.link.connected.is_set()},
            "s3": None if self.sync is None else self.sync.summary(),
            "capture": [s.key for s in self.sources] +
                       (["upload"] if self.cfg.capture.upload.enabled else []),
        }  # fmt: skip

    def reindex(self) -> None:
        """Empty the index and index every record again, in the index sink's own thread."""
        self.index_worker.request_reset()

    def stats(self) -> dict[str, Any]:
        """What `<prefix>/<device>/stats` says (retained, every `mqtt.stats_interval_s`)."""
        c = self.store.counts()
        total, used, free = shutil.disk_usage(self.cfg.data_dir)
        return {
            "images_processed": c.get("analysed", 0),
            "images_failed": c.get("failed", 0),
            "queues": {"analysis": c.get("pending", 0), "index": c.get("due_indexed", 0),
                       "publish": c.get("due_published", 0), "sync": c.get("due_synced", 0)},
            "latency_ms": self.metrics.stage_means_ms(),
            "disk": {"total_bytes": total, "used_bytes": used, "free_bytes": free},
            "uptime_s": round(time.time() - self.started_at, 1),
        }  # fmt: skip

    def _cmd_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "uptime_s": round(time.time() - self.started_at, 1)}

    def _cmd_reindex(self, request: dict[str, Any]) -> dict[str, Any]:
        self.reindex()
        return {"queued": True}

    def _cmd_capture(self, request: dict[str, Any]) -> dict[str, Any]:
        cameras = [s for s in self._running_sources if isinstance(s, CameraSource)]
        if not cameras:
            raise RuntimeError("no camera source is running (capture.camera.url)")
        for cam in cameras:
            cam.trigger()
        return {"triggered": len(cameras)}

    def start(self) -> None:
        log.info("device %s: bundle %s (%s) on %s, data in %s", self.cfg.device_id,
                 self.bundle.name, self.bundle.precision,
                 ",".join(sorted(set(self.analysers[0].placement.values()))),
                 Path(self.cfg.data_dir).resolve())  # fmt: skip
        orphans = self.store.sweep_orphans()
        if orphans:
            log.warning("removed %d stored files no record names (left by a kill mid-upload)",
                        orphans)  # fmt: skip
        counts = self.store.counts()
        if counts.get("pending") or counts.get("due_indexed"):
            log.info("resuming: %d images to analyse, %d records to index",
                     counts.get("pending", 0), counts.get("due_indexed", 0))  # fmt: skip
        self.index_worker.start()
        if self.mqtt is not None:
            self.mqtt.start()
        if self.sync is not None:
            self.sync.start()
        self.pool.start()
        if self.cfg.http.enabled:
            ctx = ApiContext(self.cfg, self.index, self.metrics, self.health, self.store,
                             self.ingestor, self.neighbours,
                             self.sync.presign if self.sync else None)  # fmt: skip
            self.http = HttpServer(create_app(ctx), self.cfg.http)
            self.port = self.http.start()
            log.info("search on http://%s:%d/", self.cfg.http.host, self.port)
            if self.mqtt is not None:
                self.mqtt.set_base_url(f"http://{self.cfg.http.host}:{self.port}")
        for s in self.sources:
            try:
                s.start()
            except RuntimeError as e:
                raise StartupError(f"capture.{s.key}: {e}") from None
            self._running_sources.append(s)
        notify("READY=1", f"STATUS=serving; {counts.get('analysed', 0)} images analysed")

    def stop(self) -> None:
        """Capture and uploads first, then analysis (bounded), the last index commit, HTTP."""
        self.stopping.set()
        notify("STOPPING=1")
        deadline = time.monotonic() + self.cfg.shutdown_timeout_s

        def left(minimum: float = 0.0) -> float:
            return max(minimum, deadline - time.monotonic())

        self.ingestor.closed = True
        for s in reversed(self._running_sources):
            s.stop()
        self.pool.stop(left())
        self.index_worker.stop(left(1.0))
        if self.mqtt is not None:
            self.mqtt.stop(left(1.0))
        if self.sync is not None:
            self.sync.stop(left(1.0))
        if self.http is not None:
            self.http.stop(left(1.0))
        self._close()
        log.info("stopped")

    def _close(self) -> None:
        for a in self.analysers:
            a.close()
        self.index.close()
        self.store.close()

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

"""Cloud sync as a running part: inside the daemon, or on its own as `s3e-sync run`.

One process syncs a store at a time (a lock file in the data folder), so the daemon and a
manual `s3e-sync run` never race over the same multipart uploads. `status` needs no network
(the store alone), so it answers offline and while the daemon runs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

from cloud_sync.client import make_client, where
from cloud_sync.config import S3Config
from cloud_sync.keys import original_key
from cloud_sync.sink import STATE_KEY, S3Sink
from cloud_sync.throttle import RateLimiter
from cloud_sync.transfer import Uploader
from edge.metrics import Metrics
from edge.sinks.worker import SinkWorker
from edge.store.records import Record
from edge.store.schema import S3_ORIGINAL
from edge.store.store import Store

log = logging.getLogger("s3e.sync")
LOCK_NAME = "sync.lock"


class SyncLockedError(RuntimeError):
    """Another process syncs this store."""


class SyncLock:
    """An exclusive `flock` on `<data_dir>/sync.lock`, holding the owner's pid; the kernel
    drops it when the process dies, kill -9 included."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        f = open(self.path, "a+")  # noqa: SIM115 - held for the life of the sync
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "?"
            f.close()
            raise SyncLockedError(
                f"another process (pid {owner}) is syncing {self.path.parent}; stop it first, "
                "or watch it with `s3e-sync status`"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def try_acquire(self) -> bool:
        """Hold the lock now, if it is free (or already ours)."""
        if self._file is None:
            try:
                self.acquire()
            except SyncLockedError:
                return False
        return True

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def holder(data_dir: Path) -> int | None:
    """The pid syncing this store now, or None."""
    path = Path(data_dir) / LOCK_NAME
    if not path.exists():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
    return None


class SyncService:
    def __init__(
        self,
        cfg: S3Config,
        store: Store,
        metrics: Metrics,
    ) -> None:
        """Raises ValueError for credentials boto3 cannot set up (an unknown profile)."""
        self.cfg, self.store = cfg, store
        self.client = make_client(cfg)
        limiter = RateLimiter(cfg.bandwidth_mb_s * 1e6) if cfg.bandwidth_mb_s else None
        self.uploader = Uploader(self.client, cfg, limiter)
        self.lock = SyncLock(store.root)
        self.sink = S3Sink(cfg, store, self.uploader, self._gate)
        self.worker = SinkWorker(
            store,
            self.sink,
            batch=4 * cfg.concurrency,
            interval=1.0,
            metrics=metrics,
            wake_after=cfg.concurrency,
            on_marked=(lambda _ids: self.sink.apply_quota()) if cfg.local_quota_mb else None,
        )
        self._waiting_logged = False

    def _gate(self) -> bool:
        """The daemon syncs while it holds the lock; a `s3e-sync run` holding it makes the
        daemon wait (said once), never fail to start."""
        if self.lock.try_acquire():
            if self._waiting_logged:
                log.info("sync lock taken: syncing")
            self._waiting_logged = False
            return True
        if not self._waiting_logged:
            log.warning(
                "another process (pid %s) syncs %s: waiting for it to finish",
                holder(self.store.root),
                self.store.root,
            )
            self._waiting_logged = True
        return False

    def start(self) -> None:
        """Apply the quota and start the worker (it takes the lock when free)."""
        n, size = self.store.due_totals("s3")
        log.info(
            "syncing originals to %s: %d records (%.1f MB) to send", where(self.cfg), n, size / 1e6
        )
        if self.cfg.local_quota_mb:
            self.sink.apply_quota()
        self._gate()  # take the lock now if free, so a manual run is refused meanwhile
        self.worker.start()

    def drain_once(self, max_wait_s: float) -> str:
        """Sync everything due now and return, as `s3e-sync run --once` does; retry through an
        outage for up to `max_wait_s`. An empty string when nothing that can go is left, else
        why not. (Raises SyncLockedError while another process syncs.)"""
        self.lock.acquire()
        try:
            if self.cfg.local_quota_mb:
                self.sink.apply_quota()
            give_up = time.monotonic() + max_wait_s
            while True:
                self.worker.drain()
                n, _ = self.store.due_totals("s3")
                if n == 0:
                    return ""
                if self.sink.failures == 0:  # the sink works: the rest cannot go as it is
                    aside = self.worker.set_aside
                    if aside == 0:
                        log.info("%d records wait for their analysis (the daemon's work)", n)
                        return ""
                    return f"{n} records left: {aside} set aside (the log says why)"
                error = self.sink.state.get("last_error")
                if self.sink.last_kind == "fatal":
                    return f"{n} records left: {error}"
                wait = self.sink.retry_at - time.monotonic()
                if time.monotonic() + wait > give_up:
                    return f"{n} records left after {max_wait_s:.0f} s: {error}"
                time.sleep(max(0.0, wait))
        finally:
            self.sink.close()
            self.lock.release()

    def stop(self, timeout: float) -> None:
        """No last pass (what is due stays due): uploads in flight end at their next request,
        and a multipart upload cut short is resumed at the next start."""
        self.uploader.stopping.set()
        self.worker.stop(timeout)
        self.sink.close()
        self.lock.release()

    def fetch(self, rec: Record) -> bytes | None:
        """An original's bytes from S3 (a re-analysis of one the quota evicted); None while
        the bucket cannot give it (the caller tries again later)."""
        if not self.store.has_mark(S3_ORIGINAL, rec.id):
            return None
        try:
            got = self.client.get_object(
                Bucket=self.cfg.bucket, Key=original_key(self.cfg.prefix, rec)
            )
            return bytes(got["Body"].read())
        except Exception as e:  # any failure: the record waits, it is not skipped
            log.warning("cannot fetch the original of %s from S3: %s", rec.id[:12], e)
            return None

    def presign(self, rec: Record) -> str | None:
        """A time-limited GET URL for a synced original (None if it is not in S3 yet)."""
        if not self.store.has_mark(S3_ORIGINAL, rec.id):
            return None
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.cfg.bucket, "Key": original_key(self.cfg.prefix, rec)},
                ExpiresIn=self.cfg.presign_expiry_s,
            )
        )

    def summary(self) -> dict[str, Any]:
        """For /healthz."""
        return status(self.cfg, self.store)


def status(cfg: S3Config, store: Store) -> dict[str, Any]:
    """What `s3e-sync status` prints: the backlog, the local quota, the last error and the
    last pass's throughput, from the store alone."""
    n, size = store.due_totals("s3")
    state = store.get_meta(STATE_KEY) or {}
    last = state.get("last_pass") or {}
    secs = last.get("seconds") or 0
    pid = holder(store.root)
    return {
        "bucket": cfg.bucket,
        "endpoint": cfg.endpoint_url or f"AWS {cfg.region}",
        "syncing": pid is not None,
        "syncing_pid": pid,
        "pending": {"records": n, "bytes": size},
        "synced": {
            "objects": state.get("synced_objects", 0),
            "bytes": state.get("synced_bytes", 0),
        },
        "last_ok_at": state.get("last_ok_at"),
        "last_error": state.get("last_error"),
        "last_error_at": state.get("last_error_at"),
        "healthy": not state.get("last_error_at")
        or (state.get("last_ok_at") or 0) > state["last_error_at"],
        "last_pass": last or None,
        "throughput_mb_s": round(last.get("bytes_sent", 0) / secs / 1e6, 3) if secs else None,
        "local": {
            "originals_bytes": store.local_bytes(),
            "quota_bytes": int(cfg.local_quota_mb * 1e6) or None,
        },
        "checked_at": time.time(),
    }

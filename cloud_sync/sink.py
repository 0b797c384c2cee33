"""The S3 sink: analysed records to the bucket, original then sidecar, `concurrency` at a time.

It is one more sink of the store (`s3`), fed by the same `SinkWorker` as the index and MQTT,
so the queue is the SQLite store: a kill -9, a reboot or a week offline leaves records that
are simply still due. An original verified in S3 is marked (`s3_original`) and never sent
again; a re-analysed record's next revision rewrites only its sidecar. When the link is down
or refuses us, a pass ends, the sink waits with exponential back-off and jitter, and says so
once; records wait, none is dropped.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cloud_sync.client import SyncError, classify, where
from cloud_sync.config import S3Config
from cloud_sync.keys import device_prefix, original_key, sidecar, sidecar_key, thumbnail_key
from cloud_sync.retention import enforce_quota
from cloud_sync.transfer import Blob, Uploader
from edge.analysis.views import VECTOR_BLOBS
from edge.ingest.imaging import media_type
from edge.sinks.worker import RecordsRefusedError
from edge.store.records import Record
from edge.store.schema import S3_ORIGINAL
from edge.store.store import Store

log = logging.getLogger("s3e.sync")
STATE_KEY = "sync"


class S3Sink:
    name = "s3"

    def __init__(
        self, cfg: S3Config, store: Store, uploader: Uploader, gate: Callable[[], bool]
    ) -> None:
        """`gate()`: may this process sync now (it holds the sync lock)?"""
        self.cfg, self.store, self.uploader, self.gate = cfg, store, uploader, gate
        self.pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="s3-upload")
        self.retry_at = 0.0
        self.failures = 0
        self.last_kind = ""
        self.prepared = False
        self.down_since: float | None = None
        self._logged = ""
        self._link_down: SyncError | None = None
        """Set by the first link failure of a pass: the rest of the pass gives up at once."""
        self._quota_warned = False
        self.on_synced: Callable[[Record], None] | None = None
        """Called with each record verified in S3 (the progress bar of `s3e-sync run`)."""
        self.state: dict[str, Any] = store.get_meta(STATE_KEY) or {
            "last_error": None,
            "last_error_at": None,
            "last_ok_at": None,
            "synced_objects": 0,
            "synced_bytes": 0,
            "last_pass": None,
        }

    # -- the Sink protocol -------------------------------------------------------------------
    def deliver(self, records: list[Record]) -> list[str]:
        """Sync what it can of `records`; the ids now verified in S3. Returns [] at once while
        backing off after a failed pass."""
        if time.monotonic() < self.retry_at or self.uploader.stopping.is_set() or not self.gate():
            return []
        t0 = time.monotonic()
        self._link_down = None
        try:
            if not self.prepared:
                self.prepare()
            results = list(self.pool.map(self._sync_one, records))
        except SyncError as e:
            self._failed(e)
            return []
        synced = [r for r, res in zip(records, results, strict=True) if isinstance(res, int)]
        self.store.set_mark(S3_ORIGINAL, [r.id for r in synced])
        failed = {
            r.id: res for r, res in zip(records, results, strict=True) if isinstance(res, SyncError)
        }
        if self.on_synced is not None:
            for r in synced:
                self.on_synced(r)
        done = [r.id for r in synced]
        sent = sum(res for res in results if isinstance(res, int))
        self._record_pass(synced, sent, time.monotonic() - t0)
        link = next((e for e in failed.values() if e.kind != "record"), None)
        if link is not None:
            self._failed(link)
        else:
            self._ok()
        refused = {rid: e for rid, e in failed.items() if e.kind == "record"}
        if len(refused) > 1 and not done and len({e.reason for e in refused.values()}) == 1:
            # every record refused for the same reason: the config (a storage class, a
            # prefix the key may not write), not the records; they wait like in an outage
            first = next(iter(refused.values()))
            self._failed(SyncError("fatal", str(first), first.reason))
            return []
        if refused and link is None:
            raise RecordsRefusedError(done, {rid: str(e) for rid, e in refused.items()})
        return done

    def reset(self) -> None:
        """Nothing to forget at the far end: every record is offered again, and the objects
        already there are recognised and not sent twice."""

    # -- steps -------------------------------------------------------------------------------
    def apply_quota(self) -> None:
        """The local quota; a failure to delete is logged, never a failed sync."""
        try:
            *_, short = enforce_quota(self.store, int(self.cfg.local_quota_mb * 1e6))
        except (OSError, sqlite3.Error) as e:
            log.error("quota: cannot delete synced originals: %s", e)
            return
        if short and not self._quota_warned:
            log.warning(
                "originals are over the %.1f MB quota and none left is synced yet: "
                "kept until they are",
                self.cfg.local_quota_mb,
            )
        self._quota_warned = short

    def prepare(self) -> None:
        """Once per start (and after a refusal): multipart uploads left by a crash are taken
        up again or aborted. The listing also tells soonest whether the bucket and the keys
        are right. A server or key that cannot list uploads is not an error: the sweep is
        skipped, said once, and uploads cut short are resumed only within this run."""
        try:
            kept, aborted = self.uploader.sweep(
                device_prefix(self.cfg.prefix, self.store.device_id), self._still_due
            )
        except SyncError as e:
            if e.kind == "retryable" or (e.kind == "fatal" and e.reason != "AccessDenied"):
                raise
            log.warning(
                "cannot list multipart uploads in %s (%s): stale uploads are not looked for",
                where(self.cfg),
                e.reason,
            )
            kept = aborted = 0
        if kept or aborted:
            log.info("multipart uploads left from before: %d to resume, %d aborted", kept, aborted)
        self.prepared = True

    def _still_due(self, key: str) -> bool:
        rid = key.rsplit("/", 1)[-1].split(".", 1)[0]
        rec = self.store.get(rid)
        return (
            rec is not None and not self.store.has_mark(S3_ORIGINAL, rid) and key == self.key(rec)
        )

    def key(self, rec: Record) -> str:
        return original_key(self.cfg.prefix, rec)

    def _sync_one(self, rec: Record) -> int | SyncError:
        """The original, then the sidecar (whose presence says the original is whole). The
        bytes of the original sent (0: it was there already), or the error."""
        if self._link_down is not None:
            return self._link_down
        try:
            key = self.key(rec)
            outcome = "there"
            if not self.store.has_mark(S3_ORIGINAL, rec.id):
                path = self.store.original_path(rec.id, rec.ext)
                if not path.exists():
                    raise SyncError(
                        "record",
                        f"{rec.id[:12]}: the original is missing at {path}",
                        f"missing original {rec.id}",
                    )
                outcome = self.uploader.put(
                    Blob(key, media_type(rec.ext), path=path, sha256=rec.id)
                )
            thumb_key = thumbnail_key(self.cfg.prefix, rec)
            thumb = self.store.derived_path(rec.id, "thumb.jpg")
            if thumb.exists():
                self.uploader.put_document(Blob(thumb_key, "image/jpeg", data=thumb.read_bytes()))
            blobs = self.store.blobs_of(rec.id, VECTOR_BLOBS)
            doc = sidecar(rec, key, thumb_key if thumb.exists() else "", blobs)
            self.uploader.put_document(
                Blob(sidecar_key(self.cfg.prefix, rec), "application/json", data=doc)
            )
        except Exception as e:
            err = classify(e, f"sync {rec.id[:12]}")
            if err.kind != "record":
                self._link_down = err
            return err
        return rec.size if outcome == "uploaded" else 0

    # -- state: back-off, one log line per trouble, what `s3e-sync status` reads --------------
    def _failed(self, e: SyncError) -> None:
        self.failures += 1
        self.last_kind = e.kind
        self.prepared = self.prepared and e.kind == "retryable"
        base = min(self.cfg.backoff_max_s, self.cfg.backoff_min_s * 2 ** min(self.failures, 30))
        pause = random.uniform(base / 2, base)
        self.retry_at = time.monotonic() + pause
        if self.down_since is None:
            self.down_since = time.monotonic()
        message = str(e)
        if e.reason != self._logged:
            what = "refused, fix the config or the account" if e.kind == "fatal" else "unreachable"
            n, size = self.store.due_totals("s3")
            log.error(
                "S3 %s: %s; %d records (%.1f MB) wait, retrying with back-off",
                what,
                message,
                n,
                size / 1e6,
            )
            self._logged = e.reason
        self.state.update(last_error=message, last_error_at=time.time())
        self.store.set_meta(STATE_KEY, self.state)

    def _ok(self) -> None:
        if self.down_since is not None:
            log.info("S3 reachable again after %.0f s", time.monotonic() - self.down_since)
        self.failures, self.down_since, self._logged = 0, None, ""

    def _record_pass(self, synced: list[Record], sent: int, secs: float) -> None:
        """Totals of what is verified in S3; the throughput of what this pass sent."""
        if not synced:
            return
        self.state["synced_objects"] += len(synced)
        self.state["synced_bytes"] += sum(r.size for r in synced)
        self.state["last_ok_at"] = time.time()
        self.state["last_pass"] = {
            "objects": len(synced),
            "bytes_sent": sent,
            "seconds": round(secs, 3),
        }
        self.store.set_meta(STATE_KEY, self.state)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.uploader.close()

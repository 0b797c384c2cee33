"""The durable store: content-addressed originals on disk and records in SQLite (WAL).

The store is the daemon's queue. An image is accepted once its original is fsynced under its
sha256 and its row is committed with status `pending`; from then on nothing can lose it. The
analyser takes pending rows, and every sink (the index now; MQTT and S3 later) takes analysed
rows whose own column (`indexed_at`, `published_at`, `synced_at`) is still empty, in capture
order. A kill -9 at any point leaves rows that are simply still due.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SINKS = ("indexed", "published", "synced")
SCHEMA_VERSION = 2

_TABLES = f"""
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    source TEXT NOT NULL,
    source_name TEXT NOT NULL DEFAULT '',
    captured_at REAL NOT NULL,
    accepted_at REAL NOT NULL,
    ext TEXT NOT NULL,
    size INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    analysed_at REAL,
    analysed_seq INTEGER,
    caption TEXT,
    words TEXT,
    attention BLOB,
    grid INTEGER,
    labels TEXT,
    segments TEXT,
    anomaly REAL,
    cluster TEXT,
    latent BLOB,
    visual TEXT,
    out_of_domain INTEGER,
    ood_score REAL,
    bundle TEXT,
    precision TEXT,
    accelerators TEXT,
    timings TEXT,
    {", ".join(f"{s}_at REAL" for s in SINKS)},
    evicted_at REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Columns added since version 1, for stores written by an older daemon.
_ADDED = {"evicted_at": "REAL", "visual": "TEXT", "out_of_domain": "INTEGER", "ood_score": "REAL"}

_INDEXES = f"""
CREATE INDEX IF NOT EXISTS records_pending ON records(seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS records_analysed ON records(analysed_seq) WHERE status = 'analysed';
{
    "".join(
        f"CREATE INDEX IF NOT EXISTS records_due_{s} ON records(seq) "
        f"WHERE status = 'analysed' AND {s}_at IS NULL;"
        for s in SINKS
    )
}
CREATE INDEX IF NOT EXISTS records_evictable ON records(seq)
    WHERE synced_at IS NOT NULL AND evicted_at IS NULL;
PRAGMA user_version = {SCHEMA_VERSION};
"""

# A Record's columns: everything but the attention and latent blobs, which sinks never need.
_COLUMNS = (
    "seq, id, device_id, source, source_name, captured_at, accepted_at, ext, size, width, "
    "height, status, error, caption, words, labels, segments, anomaly, cluster, bundle, "
    "precision, accelerators, timings, evicted_at, visual, out_of_domain, ood_score, "
    + ", ".join(f"{s}_at" for s in SINKS)
)


@dataclass
class Analysis:
    """What the three models said about one image."""

    caption: str
    words: list[str]
    attention: np.ndarray
    """(len(words), grid, grid), each word's map over the regions."""
    visual: list[float]
    """Per word, how much it relied on the image (1 - the sentinel's share)."""
    labels: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    anomaly: float
    out_of_domain: bool
    ood_score: float
    """Above 1: out of the bundle's domain (see `models.latent`)."""
    latent: np.ndarray
    timings: dict[str, float]
    """Milliseconds per stage."""
    accelerators: dict[str, str] = field(default_factory=dict)


@dataclass
class Record:
    """One image's row, as sinks and the API see it."""

    seq: int
    id: str
    device_id: str
    source: str
    source_name: str
    captured_at: float
    accepted_at: float
    ext: str
    size: int
    width: int
    height: int
    status: str
    error: str | None
    caption: str | None
    words: list[str]
    labels: list[dict[str, Any]]
    segments: list[dict[str, Any]]
    anomaly: float | None
    cluster: str | None
    bundle: str | None
    precision: str | None
    accelerators: dict[str, str]
    timings: dict[str, float]
    sinks: dict[str, float | None]
    evicted_at: float | None = None
    """When the original was deleted locally (synced, then over the quota)."""
    visual: list[float] = field(default_factory=list)
    out_of_domain: bool = False
    ood_score: float | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON a client gets: everything but the raw attention and latent arrays."""
        return {k: v for k, v in self.__dict__.items() if k != "seq"}


def _attention_blob(attention: np.ndarray) -> bytes:
    """uint8 per cell, each word scaled to its own peak: 64 bytes a word instead of 256."""
    a = np.asarray(attention, dtype=np.float32)
    peak = a.reshape(len(a), -1).max(axis=1).reshape(-1, 1, 1) if len(a) else a
    return np.round(a / np.maximum(peak, 1e-12) * 255).astype(np.uint8).tobytes()


class Store:
    """Originals, derived files (thumbnail, mask) and the SQLite records of one device."""

    def __init__(self, data_dir: Path, device_id: str) -> None:
        self.root = Path(data_dir)
        self.device_id = device_id
        for sub in ("originals", "derived", "rejected", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._clean_tmp()
        self.db_path = self.root / "records.sqlite3"
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_TABLES)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(records)")}
            for col, kind in _ADDED.items():
                if col not in have:
                    self._db.execute(f"ALTER TABLE records ADD COLUMN {col} {kind}")
            self._db.executescript(_INDEXES)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def sweep_orphans(self) -> int:
        """Delete originals and derived files that no record names: a kill between writing an
        upload's files and committing its row leaves them (the client never got its 201, and a
        folder file is still in the folder). Only the daemon calls this, at start, holding the
        index lock, so no accept is in flight."""
        removed = 0
        for top in ("originals", "derived"):
            for sub in sorted((self.root / top).glob("??")):
                files = [(f.name.split(".", 1)[0], f) for f in sub.iterdir() if f.is_file()]
                known: set[str] = set()
                ids = sorted({rid for rid, _ in files})
                for i in range(0, len(ids), 500):
                    part = ids[i : i + 500]
                    with self._lock:
                        rows = self._db.execute(
                            f"SELECT id FROM records WHERE id IN ({','.join('?' * len(part))})",
                            part,
                        ).fetchall()
                    known.update(r[0] for r in rows)
                for rid, f in files:
                    if rid not in known:
                        f.unlink(missing_ok=True)
                        removed += 1
        return removed

    def _clean_tmp(self) -> None:
        """Remove temp files of writers that died (a kill -9 mid-write); names end in the pid."""
        for f in (self.root / "tmp").iterdir():
            pid = f.name.rsplit(".", 2)[-2] if f.name.count(".") >= 2 else ""
            if not pid.isdigit() or not _alive(int(pid)):
                f.unlink(missing_ok=True)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise

    # -- files -------------------------------------------------------------------------------
    def original_path(self, rid: str, ext: str) -> Path:
        return self.root / "originals" / rid[:2] / f"{rid}.{ext}"

    def derived_path(self, rid: str, kind: str) -> Path:
        suffix = {"thumb": "thumb.jpg", "mask": "mask.png"}[kind]
        return self.root / "derived" / rid[:2] / f"{rid}.{suffix}"

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Temp file in the same file system, fsync, rename, fsync the folder: after a crash
        the file is either whole or absent."""
        if not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(path.parent.parent)
        tmp = self.root / "tmp" / f"{path.name}.{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    # -- acceptance and analysis -------------------------------------------------------------
    def has(self, rid: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM records WHERE id=?", (rid,)).fetchone()
        return row is not None

    def accept(
        self,
        rid: str,
        data: bytes,
        *,
        ext: str,
        width: int,
        height: int,
        thumb: bytes,
        source: str,
        source_name: str,
        captured_at: float,
        timings: dict[str, float] | None = None,
    ) -> bool:
        """Store an original durably and queue it for analysis; False if already known (the
        caller checks `has` first, to skip decoding a duplicate; a race ends here in INSERT OR
        IGNORE, over identical files)."""
        self.write_atomic(self.original_path(rid, ext), data)
        self.write_atomic(self.derived_path(rid, "thumb"), thumb)
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO records (id, device_id, source, source_name, captured_at,"
                " accepted_at, ext, size, width, height, timings) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (rid, self.device_id, source, source_name, captured_at, time.time(), ext,
                 len(data), width, height, json.dumps(timings or {})),
            )  # fmt: skip
        return cur.rowcount == 1

    def pending(self, limit: int = 32, after_seq: int = 0) -> list[tuple[int, str, str]]:
        """(seq, id, ext) of images accepted but not analysed, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, ext FROM records WHERE status='pending' AND seq>? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [(r["seq"], r["id"], r["ext"]) for r in rows]

    def save_analysis(
        self, rid: str, a: Analysis, bundle: str, precision: str, mask: bytes
    ) -> None:
        self.write_atomic(self.derived_path(rid, "mask"), mask)
        grid = int(a.attention.shape[-1]) if a.attention.ndim == 3 else 0
        with self._tx() as db:
            db.execute(
                "UPDATE records SET status='analysed', error=NULL, analysed_at=?, analysed_seq="
                "(SELECT COALESCE(MAX(analysed_seq), 0) + 1 FROM records WHERE "
                "status='analysed'), caption=?,"
                " words=?, attention=?, grid=?, labels=?, segments=?, anomaly=?, cluster=NULL,"
                " latent=?, bundle=?, precision=?, accelerators=?, visual=?, out_of_domain=?,"
                " ood_score=?, timings=json_patch(COALESCE(timings, '{}'), ?) WHERE id=?",
                (
                    time.time(), a.caption, json.dumps(a.words), _attention_blob(a.attention),
                    grid, json.dumps(a.labels), json.dumps(a.segments), float(a.anomaly),
                    np.asarray(a.latent, dtype=np.float32).tobytes(), bundle,
                    precision, json.dumps(a.accelerators), json.dumps(a.visual),
                    int(a.out_of_domain), float(a.ood_score), json.dumps(a.timings), rid,
                ),
            )  # fmt: skip

    def mark_failed(self, rid: str, reason: str) -> None:
        """Analysis failed for good on a stored image (it raised, or crashed the analysis
        process twice): the original and the row are kept, with the reason."""
        with self._tx() as db:
            db.execute("UPDATE records SET status='failed', error=? WHERE id=?", (reason, rid))

    # -- sinks -------------------------------------------------------------------------------
    def due(self, sink: str, limit: int = 64) -> list[Record]:
        """Analysed records this sink has not taken yet, in capture order: none captured after
        an image still being analysed (with several analysers, a later image can finish
        first; it waits the few milliseconds until the earlier one is done)."""
        col = _sink_column(sink)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM records WHERE status='analysed' AND {col} IS NULL "
                "AND seq < COALESCE((SELECT MIN(seq) FROM records WHERE status='pending'), "
                "1 << 62) ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [_record(r) for r in rows]

    def mark_done(self, sink: str, ids: list[str]) -> None:
        col = _sink_column(sink)
        now = time.time()
        with self._tx() as db:
            db.executemany(f"UPDATE records SET {col}=? WHERE id=?", [(now, i) for i in ids])

    def reset_sink(self, sink: str) -> int:
        """Make every record due again for one sink (a reindex, a new broker)."""
        col = _sink_column(sink)
        with self._tx() as db:
            return db.execute(f"UPDATE records SET {col}=NULL WHERE {col} IS NOT NULL").rowcount

    def due_totals(self, sink: str) -> tuple[int, int]:
        """(records, bytes of originals) this sink still owes."""
        col = _sink_column(sink)
        with self._lock:
            n, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records "
                f"WHERE status='analysed' AND {col} IS NULL"
            ).fetchone()
        return int(n), int(size)

    # -- local retention ---------------------------------------------------------------------
    def local_bytes(self) -> int:
        """Bytes of originals still on this device."""
        with self._lock:
            return int(self._db.execute(
                "SELECT COALESCE(SUM(size), 0) FROM records WHERE evicted_at IS NULL"
            ).fetchone()[0])  # fmt: skip

    def evictable(self, limit: int = 256) -> list[tuple[str, str, int]]:
        """(id, ext, size) of originals confirmed in S3 and still here, oldest first; an
        unsynced original is never among them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, ext, size FROM records WHERE synced_at IS NOT NULL AND "
                "evicted_at IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [(r["id"], r["ext"], r["size"]) for r in rows]

    def mark_evicted(self, ids: list[str]) -> None:
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "UPDATE records SET evicted_at=? WHERE id=? AND synced_at IS NOT NULL",
                [(now, i) for i in ids],
            )

    # -- small persistent state (the sync's last error and throughput, for `s3e-sync status`)
    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                       (key, json.dumps(value)))  # fmt: skip

    def get_meta(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- reads -------------------------------------------------------------------------------
    def get(self, rid: str) -> Record | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM records WHERE id=?", (rid,)).fetchone()
        return _record(row) if row else None

    def attention(self, rid: str) -> tuple[list[str], np.ndarray, list[float]] | None:
        """Words, their attention grids (scaled to each word's peak) and visual shares."""
        with self._lock:
            row = self._db.execute(
                "SELECT words, attention, grid, visual FROM records WHERE id=? AND "
                "status='analysed'",
                (rid,),
            ).fetchone()
        if row is None:
            return None
        words, g = json.loads(row["words"]), int(row["grid"])
        grids = np.frombuffer(row["attention"], dtype=np.uint8).reshape(len(words), g, g)
        visual = json.loads(row["visual"]) if row["visual"] else [1.0] * len(words)
        return words, grids.astype(np.float32) / 255.0, visual

    def latents(self, after: int = 0) -> tuple[int, list[str], np.ndarray]:
        """(last analysed_seq, ids, latents) of records analysed after `after`, in the order
        they were analysed (which, with several workers, is not capture order)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT analysed_seq, id, latent FROM records WHERE status='analysed' AND "
                "analysed_seq>? ORDER BY analysed_seq",
                (after,),
            ).fetchall()
        if not rows:
            return after, [], np.zeros((0, 0), np.float32)
        vecs = np.stack([np.frombuffer(r["latent"], dtype=np.float32) for r in rows])
        return int(rows[-1]["analysed_seq"]), [r["id"] for r in rows], vecs

    def count_pending(self) -> int:
        with self._lock:
            return int(self._db.execute(
                "SELECT COUNT(*) FROM records WHERE status='pending'").fetchone()[0])  # fmt: skip

    def count_due(self, sink: str) -> int:
        """A count on the sink's partial index (no SUM over the table)."""
        col = _sink_column(sink)
        with self._lock:
            return int(self._db.execute(
                f"SELECT COUNT(*) FROM records WHERE status='analysed' AND {col} IS NULL"
            ).fetchone()[0])  # fmt: skip

    def counts(self) -> dict[str, int]:
        """Records by status, and how many each sink still owes."""
        with self._lock:
            out = {
                r[0]: r[1]
                for r in self._db.execute("SELECT status, COUNT(*) FROM records GROUP BY status")
            }
            out.update({f"due_{s}": self.count_due(s) for s in SINKS})
        return out

    def iter_analysed(self, batch: int = 1000) -> Iterator[Record]:
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE status='analysed' AND seq>? "
                    "ORDER BY seq LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield _record(r)
            last = rows[-1]["seq"]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sink_column(sink: str) -> str:
    if sink not in SINKS:
        raise ValueError(f"unknown sink {sink!r} (known: {', '.join(SINKS)})")
    return f"{sink}_at"


def _record(r: sqlite3.Row) -> Record:
    def js(key: str, empty: Any) -> Any:
        return json.loads(r[key]) if r[key] else empty

    return Record(
        seq=r["seq"], id=r["id"], device_id=r["device_id"], source=r["source"],
        source_name=r["source_name"], captured_at=r["captured_at"],
        accepted_at=r["accepted_at"], ext=r["ext"], size=r["size"], width=r["width"],
        height=r["height"], status=r["status"], error=r["error"], caption=r["caption"],
        words=js("words", []), labels=js("labels", []), segments=js("segments", []),
        anomaly=r["anomaly"], cluster=r["cluster"], bundle=r["bundle"],
        precision=r["precision"], accelerators=js("accelerators", {}),
        timings=js("timings", {}), sinks={s: r[f"{s}_at"] for s in SINKS},
        evicted_at=r["evicted_at"], visual=js("visual", []),
        out_of_domain=bool(r["out_of_domain"]), ood_score=r["ood_score"],
    )  # fmt: skip

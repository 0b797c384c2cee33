"""The durable store: content-addressed originals on disk and records in SQLite (WAL).

The store is the daemon's queue. An image is accepted once its original is durable under its
sha256 and its row is committed with status `pending`; from then on nothing can lose it.
Writes are committed in groups: concurrent accepts and saved analyses wait for one shared
commit, which first makes every file they wrote durable at once (one `syncfs` of the data's
file system on Linux, instead of an fsync of each file and of its folder) and then commits
their rows in one transaction, so parallel ingest costs a few fsyncs per group, not per
image. The analyser takes pending rows (and, during a re-analysis, rows of an older
bundle); every sink takes the records it still owes (`due` rows at the record's revision), in
capture order. A kill -9 at any point leaves rows that are simply still due. Schema and
migrations: `edge.store.schema`.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge.store.files import Files
from edge.store.records import COLUMNS, Analysis, Record, from_row, prefixed
from edge.store.schema import S3_ORIGINAL, create

_STALE = (
    "status!='pending' AND (bundle IS NULL OR bundle NOT IN (SELECT value FROM json_each(?))) "
    "AND NOT EXISTS (SELECT 1 FROM marks WHERE marks.name=? AND marks.seq=records.seq) AND "
    "(? IS NULL OR bundle IN (SELECT version FROM bundles WHERE created < ?))"
)
"""Records a re-analysis with the running bundles ?1 (a JSON list) still has to do: not failed
with them (mark ?2) and, with ?3 = ?4 set, analysed by a bundle made before (`--older-than`)."""
ROUTE_SEP = "+"
"""Joins the versions of the bundles a device routes between (a bundle's name never has it)."""


def _running(bundle: str) -> tuple[str, str]:
    """(the JSON list of the running set's versions, its failure mark) for `_STALE`."""
    return json.dumps(bundle.split(ROUTE_SEP)), f"failed@{bundle}"


GROUP_MAX = 64
"""Rows committed in one transaction at most."""


class _Job:
    """Rows to commit in the next group, once the files written for them are durable."""

    def __init__(self, run: Callable[[sqlite3.Connection], Any], files: list[Path]) -> None:
        self.run, self.files = run, files
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


HEX = frozenset("0123456789abcdef")


class AmbiguousIdError(KeyError):
    """A prefix that more than one id begins with."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        super().__init__(prefix)
        self.prefix, self.matches = prefix, matches


class Store:
    """Originals, derived files (thumbnail, masks) and the SQLite records of one device."""

    def __init__(self, data_dir: Path, device_id: str) -> None:
        self.root = Path(data_dir)
        self.device_id = device_id
        self.files = Files(self.root)
        self.db_path = self.root / "records.sqlite3"
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            create(self._db)
            self._db.row_factory = sqlite3.Row
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._committer: threading.Thread | None = None
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()

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
        return self.files.original_path(rid, ext)

    def derived_path(self, rid: str, suffix: str) -> Path:
        """A derived file: "thumb.jpg", or an output's file (e.g. "mask.png")."""
        return self.files.derived_path(rid, suffix)

    def write_atomic(self, path: Path, data: bytes) -> None:
        """No reader sees half a file; durable only once a group commit (`_commit`) has made
        it so, before the rows that name it."""
        self.files.write_atomic(path, data)

    def sweep_orphans(self) -> int:
        """Delete originals and derived files that no record names: a kill between writing an
        upload's files and committing its row leaves them (the client never got its 201, and a
        folder file is still in the folder). Only the daemon calls this, at start, holding the
        index lock, so no accept is in flight."""
        removed = 0
        for top in ("originals", "derived"):
            for sub in sorted((self.root / top).glob("??")):
                files = [(f.name.split(".", 1)[0], f) for f in sub.iterdir() if f.is_file()]
                ids = sorted({rid for rid, _ in files})
                known: set[str] = set()
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

    # -- acceptance --------------------------------------------------------------------------
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
        meta: dict[str, Any] | None = None,
    ) -> bool:
        """Store an original durably and queue it for analysis; False if already known. The
        caller's thread writes the files; the next group commit makes them durable and
        commits the row, and this returns once it has. `meta`: what the file itself said (a
        DICOM's attributes)."""
        files = [self.original_path(rid, ext), self.derived_path(rid, "thumb.jpg")]
        self.write_atomic(files[0], data)
        self.write_atomic(files[1], thumb)
        row = (
            rid,
            self.device_id,
            source,
            source_name,
            captured_at,
            time.time(),
            ext,
            len(data),
            width,
            height,
            json.dumps(timings or {}),
            json.dumps(meta) if meta else None,
        )
        insert = (
            "INSERT OR IGNORE INTO records (id, device_id, source, source_name, captured_at, "
            "accepted_at, ext, size, width, height, timings, meta) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?)"
        )
        return bool(self._commit(lambda db: db.execute(insert, row).rowcount == 1, files))

    def _commit(self, run: Callable[[sqlite3.Connection], Any], files: list[Path]) -> Any:
        """`run(db)` in the next group commit, after `files` are durable; its result."""
        job = _Job(run, files)
        self._start_committer()
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _start_committer(self) -> None:
        with self._lock:
            if self._committer is None:
                self._committer = threading.Thread(
                    target=self._commit_groups, name="store-commit", daemon=True
                )
                self._committer.start()

    def _commit_groups(self) -> None:
        while True:
            group = [self._jobs.get()]
            while len(group) < GROUP_MAX:
                try:
                    group.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            try:
                self.files.sync([f for job in group for f in job.files])
                with self._tx() as db:
                    for job in group:  # a job that fails fails alone
                        db.execute("SAVEPOINT job")
                        try:
                            job.result = job.run(db)
                            db.execute("RELEASE job")
                        except Exception as e:
                            db.execute("ROLLBACK TO job")
                            db.execute("RELEASE job")
                            job.error = e
            except BaseException as e:  # each waiter gets the error: nothing of it is stored
                for job in group:
                    job.error = e
            for job in group:
                job.done.set()

    def pending(self, limit: int = 32, after_seq: int = 0) -> list[tuple[int, str, str]]:
        """(seq, id, ext) of images accepted but not analysed, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, ext FROM records WHERE status='pending' AND seq>? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [(r["seq"], r["id"], r["ext"]) for r in rows]

    def stale(
        self, bundle: str, limit: int = 32, after_seq: int = 0, older_than: str | None = None
    ) -> list[tuple[int, str, str]]:
        """(seq, id, ext) of records analysed (or failed) by none of the running bundles
        (`bundle`: a version, or several joined by ROUTE_SEP) (by one created before
        `older_than`, an ISO time, if given), oldest first: what a re-analysis still has to
        do."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, id, ext FROM records WHERE {_STALE} AND seq>? ORDER BY seq LIMIT ?",
                (*_running(bundle), older_than, older_than, after_seq, limit),
            ).fetchall()
        return [(r["seq"], r["id"], r["ext"]) for r in rows]

    def count_stale(self, bundle: str, older_than: str | None = None) -> int:
        with self._lock:
            return int(
                self._db.execute(
                    f"SELECT COUNT(*) FROM records WHERE {_STALE}",
                    (*_running(bundle), older_than, older_than),
                ).fetchone()[0]
            )

    def note_bundle(self, version: str, name: str, created: str) -> None:
        """Remember when a bundle was made, for `--older-than`."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO bundles VALUES (?,?,?)", (version, name, created))

    def save_analysis(self, rid: str, a: Analysis, bundle: str, precision: str) -> int:
        """Replace the record's analysis atomically (files first, then one transaction with
        its blobs) and make it due again for every sink; the new revision."""
        files = [self.derived_path(rid, suffix) for suffix in a.files]
        for path, data in zip(files, a.files.values(), strict=True):
            self.write_atomic(path, data)
        return int(
            self._commit(lambda db: self._save_analysis(db, rid, a, bundle, precision), files)
        )

    def _save_analysis(
        self, db: sqlite3.Connection, rid: str, a: Analysis, bundle: str, precision: str
    ) -> int:
        seq = db.execute("SELECT seq FROM records WHERE id=?", (rid,)).fetchone()[0]
        db.execute(
            "UPDATE records SET status='analysed', error=NULL, analysed_at=?, analysed_seq="
            "(SELECT COALESCE(MAX(analysed_seq), 0) + 1 FROM records WHERE "
            "status='analysed'), bundle=?, precision=?, revision=revision+1, "
            "accelerators=?, analysis=?, timings=json_patch(COALESCE(timings, '{}'), ?) "
            "WHERE seq=?",
            (
                time.time(),
                bundle,
                precision,
                json.dumps(a.accelerators),
                json.dumps(a.outputs),
                json.dumps(a.timings),
                seq,
            ),
        )
        db.execute("DELETE FROM blobs WHERE seq=?", (seq,))
        db.executemany(
            "INSERT INTO blobs VALUES (?,?,?)", [(seq, k, v) for k, v in a.blobs.items()]
        )
        rev = int(db.execute("SELECT revision FROM records WHERE seq=?", (seq,)).fetchone()[0])
        db.execute("INSERT OR REPLACE INTO due SELECT name, ?, ? FROM sinks", (seq, rev))
        return rev

    def mark_failed(self, rid: str, reason: str, bundle: str) -> None:
        """Analysis failed for good on a stored image (it raised, or crashed the analysis
        process twice): the original and the row are kept, with the reason. A record that
        was analysed before keeps that analysis; either way the bundle that failed is noted,
        so a re-analysis with it does not try again."""
        with self._tx() as db:
            db.execute(
                "UPDATE records SET status='failed', error=?, bundle=? WHERE id=? AND "
                "status!='analysed'",
                (reason, bundle, rid),
            )
            db.execute("UPDATE records SET error=? WHERE id=?", (reason, rid))
            db.execute(
                "INSERT OR REPLACE INTO marks SELECT ?, seq, ? FROM records WHERE id=?",
                (f"failed@{bundle}", time.time(), rid),
            )

    # -- sinks -------------------------------------------------------------------------------
    def register_sink(self, name: str) -> int:
        """Make `name` a sink of this store; a new one owes every analysed record (the count)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM sinks WHERE name=?", (name,)).fetchone():
                return 0
            db.execute("INSERT INTO sinks VALUES (?, ?)", (name, time.time()))
            return db.execute(
                "INSERT OR REPLACE INTO due SELECT ?, seq, revision FROM records "
                "WHERE status='analysed'",
                (name,),
            ).rowcount

    def due(self, sink: str, limit: int = 64) -> list[Record]:
        """Records this sink owes, in capture order: none captured after an image still
        being analysed for the first time (with several analysers, a later image can finish
        first; it waits the few milliseconds until the earlier one is done)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {prefixed('r')} FROM due d JOIN records r ON r.seq=d.seq "
                "WHERE d.sink=? AND r.status='analysed' AND d.seq < COALESCE((SELECT MIN(seq) "
                "FROM records WHERE status='pending'), 1 << 62) ORDER BY d.seq LIMIT ?",
                (sink, limit),
            ).fetchall()
        return [from_row(r) for r in rows]

    def mark_done(self, sink: str, done: list[tuple[int, int]]) -> None:
        """(seq, revision) delivered; a newer revision saved meanwhile stays due."""
        with self._tx() as db:
            db.executemany(
                "DELETE FROM due WHERE sink=? AND seq=? AND revision<=?",
                [(sink, s, r) for s, r in done],
            )

    def reset_sink(self, sink: str) -> int:
        """Make every analysed record due again for one sink (a reindex, a new broker)."""
        with self._tx() as db:
            return db.execute(
                "INSERT OR REPLACE INTO due SELECT ?, seq, revision FROM records "
                "WHERE status='analysed'",
                (sink,),
            ).rowcount

    def count_due(self, sink: str) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM due WHERE sink=?", (sink,)).fetchone()[0]
            )

    def due_totals(self, sink: str) -> tuple[int, int]:
        """(records, bytes of originals) this sink still owes."""
        with self._lock:
            n, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(r.size), 0) FROM due d JOIN records r "
                "ON r.seq=d.seq WHERE d.sink=?",
                (sink,),
            ).fetchone()
        return int(n), int(size)

    # -- marks: facts about records (an original verified in S3) ------------------------------
    def set_mark(self, name: str, ids: list[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO marks SELECT ?, seq, ? FROM records WHERE id=?",
                [(name, time.time(), i) for i in ids],
            )

    def has_mark(self, name: str, rid: str) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM marks m JOIN records r ON r.seq=m.seq WHERE m.name=? AND r.id=?",
                    (name, rid),
                ).fetchone()
                is not None
            )

    # -- local retention ---------------------------------------------------------------------
    def local_bytes(self) -> int:
        """Bytes of originals still on this device."""
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT COALESCE(SUM(size), 0) FROM records WHERE evicted_at IS NULL"
                ).fetchone()[0]
            )

    def evictable(self, limit: int = 256) -> list[tuple[str, str, int]]:
        """(id, ext, size) of originals verified in S3 and still here, oldest first; an
        unsynced original is never among them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.id, r.ext, r.size FROM marks m JOIN records r ON r.seq=m.seq "
                "WHERE m.name=? AND r.evicted_at IS NULL ORDER BY m.seq LIMIT ?",
                (S3_ORIGINAL, limit),
            ).fetchall()
        return [(r["id"], r["ext"], r["size"]) for r in rows]

    def mark_evicted(self, ids: list[str], evicted: bool = True) -> None:
        """The originals are gone from this device (or, `evicted=False`, back for a while)."""
        now = time.time() if evicted else None
        with self._tx() as db:
            db.executemany("UPDATE records SET evicted_at=? WHERE id=?", [(now, i) for i in ids])

    # -- small persistent state --------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def get_meta(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- reads -------------------------------------------------------------------------------
    def get(self, rid: str) -> Record | None:
        with self._lock:
            row = self._db.execute(f"SELECT {COLUMNS} FROM records WHERE id=?", (rid,)).fetchone()
        return from_row(row) if row else None

    def blob(self, rid: str, name: str) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT b.data FROM blobs b JOIN records r ON r.seq=b.seq WHERE r.id=? AND "
                "b.name=?",
                (rid, name),
            ).fetchone()
        return bytes(row[0]) if row else None

    def vectors(
        self, name: str, bundle: str, after: int = 0, limit: int = 50_000
    ) -> tuple[int, list[int], list[bytes]]:
        """(last analysed_seq read, seqs, blob `name`) of up to `limit` records analysed after
        `after` by `bundle`, in the order they were analysed (a record analysed again appears
        again). The cursor passes records of other bundles: their vectors are of another
        space."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.analysed_seq, r.seq, r.bundle, b.data FROM records r LEFT JOIN blobs b "
                "ON b.seq=r.seq AND b.name=? WHERE r.status='analysed' AND r.analysed_seq>? "
                "ORDER BY r.analysed_seq LIMIT ?",
                (name, after, limit),
            ).fetchall()
        if not rows:
            return after, [], []
        kept = [(int(r[1]), bytes(r[3])) for r in rows if r[2] == bundle and r[3] is not None]
        return int(rows[-1][0]), [s for s, _ in kept], [b for _, b in kept]

    def blobs_of(self, rid: str, names: tuple[str, ...]) -> dict[str, bytes]:
        """The named blobs one record has."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT b.name, b.data FROM blobs b JOIN records r ON r.seq=b.seq WHERE r.id=? "
                f"AND b.name IN ({','.join('?' * len(names))})",
                (rid, *names),
            ).fetchall()
        return {str(n): bytes(d) for n, d in rows}

    def ids_of(self, seqs: list[int]) -> dict[int, str]:
        """Record ids by seq (the vector indexes' keys)."""
        with self._lock:
            return dict(
                self._db.execute(
                    f"SELECT seq, id FROM records WHERE seq IN ({','.join('?' * len(seqs))})", seqs
                ).fetchall()
            )

    def resolve(self, ref: str) -> str:
        """The id `ref` names: itself, or the one id it begins when it is 8 to 63 hex
        characters (what the logs print). KeyError: no such image; AmbiguousIdError: more than
        one begins with it."""
        if len(ref) == 64 or not (8 <= len(ref) < 64 and all(c in HEX for c in ref)):
            return ref
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM records WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                (ref, ref + "g"),
            ).fetchall()
        if not rows:
            raise KeyError(ref)
        if len(rows) > 1:
            raise AmbiguousIdError(ref, [r[0] for r in rows])
        return str(rows[0][0])

    def seq_of(self, rid: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT seq FROM records WHERE id=?", (rid,)).fetchone()
        return int(row[0]) if row else None

    def last_analysed(self) -> int:
        """The newest `analysed_seq` (0 before any analysis): vector indexes at it are
        current."""
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(analysed_seq) FROM records WHERE status='analysed'"
            ).fetchone()
        return int(row[0] or 0)

    def held_if_free(self) -> contextlib.AbstractContextManager[bool]:
        """The store's lock, held if no thread holds it now (see `held_if_free`)."""
        return held_if_free(self._lock)

    def blobs(self, seqs: list[int], name: str) -> dict[int, bytes]:
        """Blob `name` of each of `seqs` that has one."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, data FROM blobs WHERE name=? AND seq IN "
                f"({','.join('?' * len(seqs))})",
                (name, *seqs),
            ).fetchall()
        return {int(s): bytes(d) for s, d in rows}

    def count_pending(self) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM records WHERE status='pending'").fetchone()[
                    0
                ]
            )

    def counts(self) -> dict[str, int]:
        """Records by status, and how many each sink still owes (`due_<sink>`)."""
        with self._lock:
            out = {
                r[0]: r[1]
                for r in self._db.execute("SELECT status, COUNT(*) FROM records GROUP BY status")
            }
            out.update(
                {
                    f"due_{r[0]}": r[1]
                    for r in self._db.execute(
                        "SELECT s.name, COUNT(d.seq) FROM sinks s LEFT JOIN due d ON d.sink=s.name "
                        "GROUP BY s.name"
                    )
                }
            )
        return out

    def iter_analysed(self, batch: int = 1000) -> Iterator[Record]:
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {COLUMNS} FROM records WHERE status='analysed' AND seq>? "
                    "ORDER BY seq LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield from_row(r)
            last = rows[-1]["seq"]


@contextmanager
def held_if_free(lock: threading.RLock) -> Iterator[bool]:
    """Hold `lock` if it is free now (True), else nothing (False): what the event loop may
    do, as waiting there stalls every request. The lock is reentrant, so what runs under it
    in the same thread takes it again without waiting."""
    got = lock.acquire(blocking=False)
    try:
        yield got
    finally:
        if got:
            lock.release()

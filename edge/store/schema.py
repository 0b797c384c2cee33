"""The store's SQLite schema, and the migration of stores written by older daemons.

Version 3: a record's analysis is one JSON document (per output plug-in) plus named blobs;
delivery is data: a `due` row per (sink, record) still owed at the record's revision, so a new
sink needs no column and no migration; `marks` note facts about records (an original verified
in S3). Version 2 stores (one column per model field and per sink) are rebuilt in place, once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

log = logging.getLogger("s3e.store")
SCHEMA_VERSION = 3

TABLES = """
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
    bundle TEXT,
    precision TEXT,
    revision INTEGER NOT NULL DEFAULT 0,
    accelerators TEXT,
    timings TEXT,
    analysis TEXT,
    evicted_at REAL,
    meta TEXT
);
CREATE TABLE IF NOT EXISTS blobs (
    seq INTEGER NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (seq, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS due (
    sink TEXT NOT NULL, seq INTEGER NOT NULL, revision INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marks (
    name TEXT NOT NULL, seq INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (name, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sinks (name TEXT PRIMARY KEY, registered_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS bundles (version TEXT PRIMARY KEY, name TEXT, created TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

INDEXES = f"""
CREATE INDEX IF NOT EXISTS records_pending ON records(seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS records_analysed ON records(analysed_seq) WHERE status = 'analysed';
CREATE INDEX IF NOT EXISTS records_bundle ON records(bundle, seq) WHERE status != 'pending';
CREATE INDEX IF NOT EXISTS records_local ON records(seq) WHERE evicted_at IS NULL;
PRAGMA user_version = {SCHEMA_VERSION};
"""

V2_SINKS = {"indexed": "index", "published": "mqtt", "synced": "s3"}
"""v2's per-sink columns and the sink names that replace them."""
S3_ORIGINAL = "s3_original"
"""The mark of an original verified in S3 (evictable under the local quota)."""


def create(db: sqlite3.Connection) -> None:
    """Create or migrate to the current schema (in the caller's connection)."""
    have = {r[1] for r in db.execute("PRAGMA table_info(records)")}
    if have and "analysis" not in have:
        _migrate_v2(db, have)
        have = {r[1] for r in db.execute("PRAGMA table_info(records)")}
    if have and "meta" not in have:  # a store from before files' own attributes were kept
        db.execute("ALTER TABLE records ADD COLUMN meta TEXT")
    db.executescript(TABLES)
    db.executescript(INDEXES)


def _migrate_v2(db: sqlite3.Connection, have: set[str]) -> None:
    """One rebuild: old model columns become the analysis document and blobs, old sink
    columns become due rows and marks; the old columns go."""
    log.warning("migrating the record store to schema v%d (once)", SCHEMA_VERSION)
    for col, kind in (
        ("evicted_at", "REAL"),
        ("visual", "TEXT"),
        ("out_of_domain", "INTEGER"),
        ("ood_score", "REAL"),
    ):
        if col not in have:
            db.execute(f"ALTER TABLE records ADD COLUMN {col} {kind}")
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE records RENAME TO records_v2")
        db.executescript(
            TABLES.replace(
                "CREATE TABLE IF NOT EXISTS meta", "CREATE TABLE IF NOT EXISTS meta_unused"
            )
        )
        db.execute("DROP TABLE IF EXISTS meta_unused")
        db.execute("DROP INDEX IF EXISTS records_pending")
        db.execute("DROP INDEX IF EXISTS records_analysed")
        db.row_factory = sqlite3.Row
        for r in db.execute("SELECT * FROM records_v2 ORDER BY seq").fetchall():
            _copy_v2_row(db, r)
        db.execute("DROP TABLE records_v2")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _copy_v2_row(db: sqlite3.Connection, r: sqlite3.Row) -> None:
    analysed = r["status"] == "analysed"
    analysis = json.dumps(_v2_analysis(r)) if analysed else None
    db.execute(
        "INSERT INTO records (seq, id, device_id, source, source_name, captured_at, "
        "accepted_at, ext, size, width, height, status, error, analysed_at, analysed_seq, "
        "bundle, precision, revision, accelerators, timings, analysis, evicted_at) VALUES "
        "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            r["seq"],
            r["id"],
            r["device_id"],
            r["source"],
            r["source_name"],
            r["captured_at"],
            r["accepted_at"],
            r["ext"],
            r["size"],
            r["width"],
            r["height"],
            r["status"],
            r["error"],
            r["analysed_at"],
            r["analysed_seq"],
            r["bundle"],
            r["precision"],
            1 if analysed else 0,
            r["accelerators"],
            r["timings"],
            analysis,
            r["evicted_at"],
        ),
    )
    if not analysed:
        return
    for name in ("attention", "latent"):
        if r[name]:
            db.execute("INSERT INTO blobs VALUES (?,?,?)", (r["seq"], name, r[name]))
    for column, sink in V2_SINKS.items():
        db.execute("INSERT OR IGNORE INTO sinks VALUES (?, 0)", (sink,))
        if r[f"{column}_at"] is None:
            db.execute("INSERT INTO due VALUES (?,?,1)", (sink, r["seq"]))
    if r["synced_at"] is not None:
        db.execute("INSERT INTO marks VALUES (?,?,?)", (S3_ORIGINAL, r["seq"], r["synced_at"]))


def _v2_analysis(r: sqlite3.Row) -> dict[str, Any]:
    """A v2 row's model columns as the v3 outputs' fields (the cluster name is dropped)."""
    words = json.loads(r["words"]) if r["words"] else []
    labels = json.loads(r["labels"]) if r["labels"] else []
    grid = int(r["grid"] or 0)
    out: dict[str, Any] = {
        "caption": {
            "text": r["caption"] or "",
            "words": words,
            "grid": grid,
            "visual": json.loads(r["visual"]) if r["visual"] else [1.0] * len(words),
        },
        "segmentation": {"segments": json.loads(r["segments"]) if r["segments"] else []},
    }
    if r["anomaly"] is not None:
        out["vae"] = {
            "labels": [
                {"name": lab["name"], "score": lab["score"]}
                for lab in labels
                if lab.get("kind") == "vae"
            ],
            "anomaly": float(r["anomaly"]),
            "out_of_domain": bool(r["out_of_domain"]),
            "ood_score": float(r["ood_score"] or 0.0),
        }
    return out

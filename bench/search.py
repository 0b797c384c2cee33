"""Search at scale: Tantivy (through the daemon's `SearchIndex` and over HTTP) against SQLite
FTS5 on the same records and queries, and brute-force latent neighbours.

    python bench/search.py --sizes 100000 1000000 --json bench/results/search.json

Records are generated like the chest captions (findings, zones, sides, paraphrases), with
labels, capture times over a year and anomaly scores. For each size: indexing records/second
(Tantivy: one writer, one commit, each add replacing any older document of the same id as
the daemon does, and a rebuild into an empty index as `reindex` does; FTS5: one transaction,
porter stemmer), then for a fixed
mix of queries (single words, two-word AND, phrases, a label filter, an anomaly range) the
p50/p99 latency of the query alone (top 20 with the total count) in both engines, and of
`GET /search` over HTTP (uvicorn, loopback; snippets and label facets included). Ratios are
SQLite over Tantivy. Last, `/similar`'s numpy brute force over n x 32 float32 latents.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.api import ApiContext, create_app
from edge.config import parse_config
from edge.index import Filters, SearchIndex
from edge.metrics import Metrics
from edge.records import Record
from edge.similar import LatentNeighbours

FINDINGS = [
    "{side} {level} zone consolidation, consistent with pneumonia",
    "consolidation in the {side} {level} zone, in keeping with pneumonia",
    "{side} {level} zone pulmonary nodule",
    "small {side} pleural effusion",
    "{side} pleural effusion with blunting of the costophrenic angle",
    "the cardiac silhouette is enlarged",
    "cardiomegaly",
    "no acute finding",
    "clear lungs, no acute cardiopulmonary abnormality",
]
LABELS = ["lung", "heart", "opacity", "effusion", "normal", "anomalous"]
# (free text, label filter, min anomaly); the same mix for both engines.
QUERIES: list[tuple[str, str | None, float | None]] = [
    ("pneumonia", None, None),
    ("effusion", None, None),
    ("nodule", None, None),
    ("cardiomegaly", None, None),
    ("right lower", None, None),
    ("left pleural", None, None),
    ('"pleural effusion"', None, None),
    ('"upper zone"', None, None),
    ("consolidation", "opacity", None),
    ("pneumonia", None, 1.0),
]


def records(n: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    out = []
    for i in range(n):
        caption = FINDINGS[int(rng.integers(len(FINDINGS)))].format(
            side=("left", "right")[int(rng.integers(2))],
            level=("upper", "middle", "lower")[int(rng.integers(3))],
        )
        labs = [LABELS[j] for j in rng.choice(len(LABELS), int(rng.integers(1, 4)), False)]
        out.append(
            Record(
                seq=i + 1, id=f"{i:064x}", device_id="bench", source="folder", source_name="",
                captured_at=start + float(rng.uniform(0, 365 * 86400)), accepted_at=0.0,
                ext="png", size=0, width=64, height=64, status="analysed", error=None,
                bundle="chest-int8", precision="int8", revision=1, accelerators={}, timings={},
                analysis={
                    "caption": {"text": caption, "words": caption.split(), "visual": [],
                                "grid": 8},
                    "segmentation": {"segments": [{"class": lab, "fraction": 0.1}
                                                  for lab in labs]},
                    "vae": {"labels": [], "anomaly": float(rng.gamma(2.0, 0.4)),
                            "out_of_domain": False, "ood_score": 0.1},
                },
            )
        )  # fmt: skip
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(samples, 50)),
        "p99_ms": float(np.percentile(samples, 99)),
    }


def timed(fn: Callable[[str, str | None, float | None], object], repeats: int) -> dict[str, float]:
    for q in QUERIES:
        fn(*q)
    samples = []
    for _ in range(repeats):
        for q in QUERIES:
            t0 = time.perf_counter()
            fn(*q)
            samples.append((time.perf_counter() - t0) * 1e3)
    return percentiles(samples)


def build_fts(recs: list[Record], path: Path) -> tuple[sqlite3.Connection, float]:
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute(
        "CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, caption, labels, "
        "captured UNINDEXED, anomaly UNINDEXED, tokenize='porter unicode61')"
    )
    t0 = time.perf_counter()
    with db:
        db.executemany(
            "INSERT INTO docs VALUES (?,?,?,?,?)",
            ((r.id, r.analysis["caption"]["text"],
              " ".join(s["class"] for s in r.analysis["segmentation"]["segments"]),
              r.captured_at, r.analysis["vae"]["anomaly"]) for r in recs),
        )  # fmt: skip
    return db, time.perf_counter() - t0


def fts_query(db: sqlite3.Connection) -> Callable[[str, str | None, float | None], object]:
    def run(q: str, label: str | None, min_anomaly: float | None) -> object:
        match = " AND ".join(q.split()) if not q.startswith('"') else q
        where, args = "docs MATCH ?", [match]
        if label:
            where += " AND docs.labels MATCH ?"
            args.append(f'"{label}"')
        if min_anomaly is not None:  # a number inlined: FTS5 columns compare as stored
            where += f" AND anomaly >= {float(min_anomaly)!r}"
        total = db.execute(f"SELECT COUNT(*) FROM docs WHERE {where}", args).fetchone()[0]
        rows = db.execute(
            f"SELECT id, caption FROM docs WHERE {where} ORDER BY rank LIMIT 20", args
        ).fetchall()
        return total, rows

    return run


def tantivy_query(index: SearchIndex) -> Callable[[str, str | None, float | None], object]:
    searcher_box: dict[str, Any] = {}

    def run(q: str, label: str | None, min_anomaly: float | None) -> object:
        query = index.query(q, Filters(label=label, min_anomaly=min_anomaly))
        searcher = searcher_box.setdefault("s", index.index.searcher())
        result = searcher.search(query, 20, count=True)
        return result.count, [searcher.doc(a)["id"][0] for _, a in result.hits]

    return run


def serve(index: SearchIndex) -> tuple[uvicorn.Server, int]:
    cfg = parse_config({"http": {"port": 0}})
    app = create_app(ApiContext(cfg, index, Metrics(), dict))
    server = uvicorn.Server(uvicorn.Config(app, port=0, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, int(server.servers[0].sockets[0].getsockname()[1])


def http_query(port: int) -> Callable[[str, str | None, float | None], object]:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}")

    def run(q: str, label: str | None, min_anomaly: float | None) -> object:
        params: dict[str, Any] = {"q": q, "limit": 20}
        if label:
            params["label"] = label
        if min_anomaly is not None:
            params["min_anomaly"] = min_anomaly
        r = client.get("/search", params=params)
        r.raise_for_status()
        return r.json()["total"]

    return run


def similar(n: int, dim: int = 32, queries: int = 50) -> dict[str, float]:
    rng = np.random.default_rng(1)
    nb = LatentNeighbours(store=None)
    ids = [f"{i}" for i in range(n)]
    nb.add(ids, rng.standard_normal((n, dim)).astype(np.float32))
    samples = []
    for i in rng.integers(0, n, queries):
        t0 = time.perf_counter()
        nb.query(ids[int(i)], 10)
        samples.append((time.perf_counter() - t0) * 1e3)
    return percentiles(samples)


def run_size(n: int, tmp: Path, repeats: int) -> dict[str, Any]:
    recs = records(n)
    rebuild = SearchIndex(tmp / f"tantivy-rebuild-{n}", heap_mb=256)
    t0 = time.perf_counter()
    for i in range(0, n, 10_000):
        rebuild.add(recs[i : i + 10_000], replace=False)
    rebuild.commit()
    t_rebuild = time.perf_counter() - t0
    rebuild.close()
    index = SearchIndex(tmp / f"tantivy-{n}", heap_mb=256)
    t0 = time.perf_counter()
    for i in range(0, n, 10_000):
        index.add(recs[i : i + 10_000])
    index.commit()
    t_index = time.perf_counter() - t0
    db, t_fts = build_fts(recs, tmp / f"fts-{n}.sqlite3")
    del recs
    tq, fq = tantivy_query(index), fts_query(db)
    for q in QUERIES:  # both engines agree on how many records match
        assert tq(*q)[0] == fq(*q)[0], q  # type: ignore[index]
    out: dict[str, Any] = {
        "records": n,
        "index_records_per_s": {
            "tantivy": n / t_index,
            "tantivy_rebuild": n / t_rebuild,
            "sqlite_fts5": n / t_fts,
        },
        "query": {"tantivy": timed(tq, repeats), "sqlite_fts5": timed(fq, repeats)},
    }
    server, port = serve(index)
    out["http_search"] = timed(http_query(port), repeats)
    server.should_exit = True
    out["similar_bruteforce"] = similar(n)
    rate = out["index_records_per_s"]
    out["ratios_sqlite_over_tantivy"] = {
        "index_time": rate["tantivy"] / rate["sqlite_fts5"],
        "query_p50": out["query"]["sqlite_fts5"]["p50_ms"] / out["query"]["tantivy"]["p50_ms"],
        "query_p99": out["query"]["sqlite_fts5"]["p99_ms"] / out["query"]["tantivy"]["p99_ms"],
    }  # fmt: skip
    index.close()
    db.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--repeats", type=int, default=30, help="passes over the query mix")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "queries": [list(q) for q in QUERIES],
        "sizes": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            r = run_size(n, Path(tmp), args.repeats)
            results["sizes"].append(r)
            q, h = r["query"], r["http_search"]
            print(f"{n} records: index {r['index_records_per_s']['tantivy']:.0f} rec/s tantivy, "
                  f"{r['index_records_per_s']['sqlite_fts5']:.0f} rec/s fts5; query p50/p99 "
                  f"tantivy {q['tantivy']['p50_ms']:.2f}/{q['tantivy']['p99_ms']:.2f} ms, "
                  f"fts5 {q['sqlite_fts5']['p50_ms']:.2f}/{q['sqlite_fts5']['p99_ms']:.2f} ms; "
                  f"HTTP /search {h['p50_ms']:.2f}/{h['p99_ms']:.2f} ms; similar "
                  f"{r['similar_bruteforce']['p50_ms']:.1f} ms")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Search at scale: Tantivy (through the daemon's `SearchIndex` and over HTTP) against SQLite
FTS5 on the same records and queries; semantic and hybrid search over HTTP on the daemon's own
store, vectors and query encoder; and the approximate-nearest-neighbour indexes against brute
force.

    python bench/search.py --sizes 100000 1000000 --json bench/results/search.json

Records are generated like the chest captions (findings, zones, sides, paraphrases), with
labels, capture times over a year and anomaly scores. Their semantic vectors are those of
real phantoms analysed by the shipped `chest-int8` bundle (a pool of 256, each record one of
them with a little noise), stored as the daemon stores them (int8 regions and the profile in
SQLite blobs, written by SQL in bulk). For each size: indexing records/second (Tantivy: one
writer, one commit, each add replacing any older document of the same id as the daemon does,
and a rebuild into an empty index as `reindex` does; FTS5: one transaction, porter stemmer),
then for a fixed mix of queries (single words, two-word AND, phrases, a label filter, an
anomaly range) the p50/p99 latency of the query alone (top 20 with the total count) in both
engines, and of `GET /search` over HTTP in each mode (asked by a client in a process of its
own, `bench/http_client.py`, as a browser would; with the server's CPU time a request, which
a noisy machine shakes less than latency); the keyword path's parts (the engine,
snippets, label facets over every match, JSON and HTTP); query encoding alone; the HNSW
indexes' build time, `/similar` latency and recall@10 against brute force; and `/healthz`
over HTTP, the floor every request stands on. Ratios are SQLite over Tantivy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.analysis.bundle import Bundle, load_bundle
from edge.analysis.models import BundleModels
from edge.analysis.outputs.embedding import EmbeddingOutput, pack
from edge.api.app import create_app
from edge.api.context import ApiContext
from edge.api.server import HttpServer
from edge.config import parse_config
from edge.metrics import Metrics
from edge.parts import Hooks
from edge.search.device import DeviceBackend
from edge.search.engine import Filters, SearchEngine
from edge.search.index import SearchIndex
from edge.search.semantic import Encoders, QueryEncoder
from edge.search.vectors import VectorIndex
from edge.store.records import Record
from edge.store.store import Store

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
                seq=i + 1,
                id=f"{i:064x}",
                device_id="bench",
                source="folder",
                source_name="",
                captured_at=start + float(rng.uniform(0, 365 * 86400)),
                accepted_at=0.0,
                ext="png",
                size=0,
                width=64,
                height=64,
                status="analysed",
                error=None,
                bundle="chest-int8",
                precision="int8",
                revision=1,
                accelerators={},
                timings={},
                analysis={
                    "caption": {"text": caption, "words": caption.split(), "visual": [], "grid": 8},
                    "segmentation": {"segments": [{"class": lab, "fraction": 0.1} for lab in labs]},
                    "vae": {
                        "labels": [],
                        "anomaly": float(rng.gamma(2.0, 0.4)),
                        "out_of_domain": False,
                        "ood_score": 0.1,
                    },
                },
            )
        )
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(samples, 50)),
        "p99_ms": float(np.percentile(samples, 99)),
    }


def timed(fn: Callable[[str, str | None, float | None], object], repeats: int) -> dict[str, float]:
    """p50/p99 of `fn` over the query mix, in this process."""
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
            (
                (
                    r.id,
                    r.analysis["caption"]["text"],
                    " ".join(s["class"] for s in r.analysis["segmentation"]["segments"]),
                    r.captured_at,
                    r.analysis["vae"]["anomaly"],
                )
                for r in recs
            ),
        )
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


def serve(
    index: SearchIndex, store: Store, latent: VectorIndex, profile: VectorIndex, bundle: Bundle
) -> tuple[HttpServer, int]:
    """The daemon's HTTP server (guard, protocol, heap settling) on these parts."""
    cfg = parse_config({"http": {"port": 0}})
    encoders = Encoders(lambda: bundle)
    engine = SearchEngine(DeviceBackend(index, profile, store), encoders)
    ctx = ApiContext(cfg, store, engine, encoders, (latent,), Metrics(), dict, Hooks())
    server = HttpServer(create_app(ctx), cfg.http)
    return server, server.start()


def searches(
    queries: list[tuple[str, str | None, float | None]],
    mode: str = "keyword",
    facets: bool = True,
) -> list[tuple[str, dict[str, Any]]]:
    """`/search` requests for the query mix, top 20."""
    out = []
    for q, label, min_anomaly in queries:
        params: dict[str, Any] = {"q": q, "limit": 20, "mode": mode, "facets": str(facets).lower()}
        if label:
            params["label"] = label
        if min_anomaly is not None:
            params["min_anomaly"] = min_anomaly
        out.append(("/search", params))
    return out


def over_http(port: int, requests: list[tuple[str, dict[str, Any]]], repeats: int) -> Any:
    """p50/p99 of the requests, asked by a client in a process of its own
    (`bench/http_client.py`), and the server's CPU time a request (this process serves them
    meanwhile, doing nothing else): less shaken than latency by a noisy machine."""
    spec = {"base": f"http://127.0.0.1:{port}", "repeats": repeats, "requests": requests}
    client = [sys.executable, str(Path(__file__).with_name("http_client.py"))]
    cpu = time.process_time()
    done = subprocess.run(
        client, input=json.dumps(spec), capture_output=True, text=True, check=True
    )
    per_request = (time.process_time() - cpu) * 1e3 / (len(requests) * (repeats + 1))
    return percentiles(json.loads(done.stdout)) | {"server_cpu_ms": per_request}


SEMANTIC_QUERIES = [
    "pneumonia",
    "enlarged heart",
    "left pleural effusion",
    "nodule",
    "lungs are clear",
    "cardiomegaly",
    "right lower zone consolidation",
    "pnemonia",
]
BUNDLE = "chest-int8"
LATENT_DIM = 32


def semantic_pool(tmp: Path, size: int = 256) -> tuple[Bundle, np.ndarray, np.ndarray]:
    """(bundle, region vectors (P, n + 1, D), profiles (P, V)) of real phantoms."""
    from models.data.dataset import load_dataset, write_dataset

    bundle = load_bundle(BUNDLE)
    output = EmbeddingOutput(bundle)
    models = BundleModels(bundle, threads=2, names=bundle.doc.outputs["embedding"].models)
    ds = load_dataset(write_dataset("chest", size, 5, tmp / "pool"), 64, 1)
    vectors = np.stack([output.vectors(models.runners, x) for x in ds.images])
    return bundle, vectors, np.stack([output.profile(v) for v in vectors])


def fill_store(
    store: Store, recs: list[Record], pool: tuple[Bundle, np.ndarray, np.ndarray]
) -> float:
    """The records with their blobs, by SQL in bulk (the daemon's tables, not its write
    path: a million analyses would take hours); returns seconds."""
    bundle, vectors, profiles = pool
    rng = np.random.default_rng(2)
    packed = [pack(v) for v in vectors]
    t0 = time.perf_counter()
    db = store._db
    with store._lock:
        for i in range(0, len(recs), 50_000):  # a transaction each (the store autocommits)
            db.execute("BEGIN")
            part = recs[i : i + 50_000]
            member = rng.integers(0, len(vectors), len(part))
            prof = profiles[member] + rng.normal(0, 0.01, (len(part), profiles.shape[1]))
            latent = rng.standard_normal((len(part), LATENT_DIM)).astype(np.float32)
            db.executemany(
                "INSERT INTO records (seq, id, device_id, source, captured_at, accepted_at, ext, "
                "size, width, height, status, analysed_seq, bundle, revision, analysis) VALUES "
                "(?,?,?,?,?,?,?,?,?,?,'analysed',?,?,1,?)",
                (
                    (
                        r.seq,
                        r.id,
                        "bench",
                        "folder",
                        r.captured_at,
                        0.0,
                        "png",
                        0,
                        64,
                        64,
                        r.seq,
                        bundle.version,
                        json.dumps(r.analysis),
                    )
                    for r in part
                ),
            )
            db.executemany(
                "INSERT INTO blobs VALUES (?,?,?)",
                (
                    row
                    for k, r in enumerate(part)
                    for row in (
                        (r.seq, "regions", packed[member[k]]),
                        (r.seq, "profile", prof[k].astype(np.float32).tobytes()),
                        (r.seq, "latent", latent[k].tobytes()),
                    )
                ),
            )
            db.execute("COMMIT")
    return time.perf_counter() - t0


def recall_at_10(index: VectorIndex, matrix: np.ndarray, queries: np.ndarray, metric: str) -> float:
    """Mean share of the brute-force top 10 the HNSW index returns."""
    got = []
    for q in queries:
        if metric == "ip":
            truth = np.argpartition(-(matrix @ q), 10)[:10]
        else:
            truth = np.argpartition(((matrix - q) ** 2).sum(1), 10)[:10]
        keys = {k - 1 for k, _ in index.search(q, 10)}  # seq = row + 1
        got.append(len(keys & set(truth.tolist())) / 10)
    return float(np.mean(got))


RECALL_QUERIES = 500
"""Queries for recall@10: recall varies from query to query, so a small block would be noise."""


def vector_indexes(store: Store, tmp: Path, version: str, n: int) -> dict[str, Any]:
    """Build both indexes as the daemon's catch-up does; /similar's search latency and the
    recall of both against brute force."""
    out: dict[str, Any] = {}
    built = {}
    for blob, metric, kind in (
        ("latent", "l2sq", "hnsw"),
        ("profile", "ip", "columns"),
        ("profile", "ip", "hnsw"),
    ):
        index = VectorIndex(store, tmp / f"vectors-{n}-{kind}", blob, metric, lambda: version, kind)
        index.open()
        t0 = time.perf_counter()
        index.refresh()
        built[f"{blob}_{kind}"] = index
        _, _, blobs = store.vectors(blob, version, 0, limit=n)
        matrix = np.stack([np.frombuffer(b, np.float32) for b in blobs])
        rng = np.random.default_rng(3)
        if metric == "l2sq":
            queries = matrix[rng.integers(0, n, RECALL_QUERIES)]
        else:
            queries = np.zeros((RECALL_QUERIES, matrix.shape[1]), np.float32)
            for row in queries:
                row[rng.choice(matrix.shape[1], int(rng.integers(1, 4)), replace=False)] = 1
                row /= row.sum()
        samples = []
        for q in queries[:100]:
            t1 = time.perf_counter()
            index.search(q, 11)
            samples.append((time.perf_counter() - t1) * 1e3)
        out[f"{blob}_{kind}"] = {
            "build_s": time.perf_counter() - t0,
            "vectors": len(index),
            "search": percentiles(samples),
            "recall_at_10": recall_at_10(index, matrix, queries, metric),
        }
        del matrix
    out["indexes"] = built
    return out


def encoding(bundle: Bundle, repeats: int) -> dict[str, float]:
    encoder = QueryEncoder(bundle)
    samples = []
    for _ in range(repeats):
        for q in SEMANTIC_QUERIES:
            t0 = time.perf_counter()
            encoder.encode(q)
            samples.append((time.perf_counter() - t0) * 1e3)
    return percentiles(samples)


def keyword_parts(index: SearchIndex, repeats: int) -> dict[str, Any]:
    """The keyword path in steps: the engine alone (the query as typed, no typo tolerance),
    the daemon's search without facets (typo tolerance, the phrase re-scoring, snippets and
    stored fields), and with label and source counts over every match (run beside)."""
    engine = tantivy_query(index)
    steps = {
        "engine": engine,
        "with_snippets": lambda q, lab, a: index.search(
            q, Filters(label=lab, min_anomaly=a), 20, fuzzy=True, facets=False
        ),
        "with_facets": lambda q, lab, a: index.search(
            q, Filters(label=lab, min_anomaly=a), 20, fuzzy=True, facets=True
        ),
    }
    return {name: timed(fn, repeats) for name, fn in steps.items()}


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
    pool = semantic_pool(tmp / f"semantic-{n}")
    store = Store(tmp / f"store-{n}", "bench")
    out["store_fill_s"] = fill_store(store, records(n), pool)
    version = pool[0].version
    vec = vector_indexes(store, tmp, version, n)
    built = vec.pop("indexes")
    latent, profile = built["latent_hnsw"], built["profile_columns"]
    del built  # the profile's HNSW index (recall only) is no part of the daemon's memory
    out["vectors"] = vec
    out["query_encoding"] = encoding(pool[0], repeats)
    out["keyword_parts"] = keyword_parts(index, repeats)
    server, port = serve(index, store, latent, profile, pool[0])
    out["http_healthz"] = over_http(port, [("/healthz", {})], repeats * 10)  # the floor
    sem: list[tuple[str, str | None, float | None]] = [(q, None, None) for q in SEMANTIC_QUERIES]
    sem.append(("pneumonia", "opacity", None))
    out["http_search"] = over_http(port, searches(QUERIES), repeats)
    out["http_search_no_facets"] = over_http(port, searches(QUERIES, facets=False), repeats)
    latest = ("/search", {"q": "", "sort": "recent", "limit": 24, "facets": "false"})
    out["http_latest_poll"] = over_http(port, [latest], repeats * 10)  # the live view's poll
    for mode in ("semantic", "hybrid"):
        out[f"http_{mode}"] = over_http(port, searches(sem, mode), repeats)
    ids = list(store.ids_of(list(range(1, n + 1, max(n // 50, 1)))).values())
    out["http_similar"] = over_http(port, [(f"/images/{i}/similar", {}) for i in ids], repeats)
    server.stop()
    store.close()
    rate = out["index_records_per_s"]
    out["ratios_sqlite_over_tantivy"] = {
        "index_time": rate["tantivy"] / rate["sqlite_fts5"],
        "query_p50": out["query"]["sqlite_fts5"]["p50_ms"] / out["query"]["tantivy"]["p50_ms"],
        "query_p99": out["query"]["sqlite_fts5"]["p99_ms"] / out["query"]["tantivy"]["p99_ms"],
    }
    index.close()
    db.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
            print(
                f"{n} records: index {r['index_records_per_s']['tantivy']:.0f} rec/s tantivy, "
                f"{r['index_records_per_s']['sqlite_fts5']:.0f} rec/s fts5; query p50/p99 "
                f"tantivy {q['tantivy']['p50_ms']:.2f}/{q['tantivy']['p99_ms']:.2f} ms, "
                f"fts5 {q['sqlite_fts5']['p50_ms']:.2f}/{q['sqlite_fts5']['p99_ms']:.2f} ms; "
                f"HTTP /search {h['p50_ms']:.2f}/{h['p99_ms']:.2f} ms (no facets "
                f"{r['http_search_no_facets']['p99_ms']:.2f}); hybrid p99 "
                f"{r['http_hybrid']['p99_ms']:.2f} ms; similar p99 "
                f"{r['http_similar']['p99_ms']:.2f} ms, recall@10 latent "
                f"{r['vectors']['latent_hnsw']['recall_at_10']:.3f} profile (columns) "
                f"{r['vectors']['profile_columns']['recall_at_10']:.3f} (hnsw) "
                f"{r['vectors']['profile_hnsw']['recall_at_10']:.3f}; query encoding p99 "
                f"{r['query_encoding']['p99_ms']:.3f} ms; /healthz p99 "
                f"{r['http_healthz']['p99_ms']:.2f} ms"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

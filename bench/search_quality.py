"""Search quality through the daemon's HTTP API: a shipped bundle analyses a held-out split and
the split's own queries (`models.queries`: words and two-word phrases in 3-80% of the images,
one-edit typos of the words, bound attributes) are asked in every mode.

    python bench/search_quality.py --bundle chest-int8 --n 400 \
        --json bench/results/search_quality_chest-int8.json

The split is generated with the reproduce recipe's held-out seed (never trained on) unless
`--data` names a folder. Reported per kind of query: mean precision@10 in keyword, semantic
and hybrid mode (both fusions), chance (the relevant share); the words the captioner never
emitted on the split (where keyword search cannot find them); and the pointing game of each
query noun's map from `/images/{id}/match` against the instance it names.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.tokens import tokenize
from edge.analysis.bundle import load_bundle
from edge.config import parse_config
from edge.daemon import Daemon
from models.data.dataset import load_dataset, write_dataset
from models.data.instances import grid_regions
from models.queries import QuerySet, build_queries, chance, named_nouns, precision_at

HELD_OUT_SEED = {"shapes": 2001, "chest": 2002}
"""`models.reproduce.RECIPES[domain].test_seed`: images no shipped model trained on."""
POINTING_CALLS = 600


def start_daemon(bundle: str, data_dir: Path, inbox: Path) -> Daemon:
    cfg = parse_config(
        {
            "device_id": "bench",
            "data_dir": str(data_dir),
            "model": {
                "bundle": bundle,
                "catch_all": "",
                "accelerator": "cpu",
                "threads": 1,
                "workers": 2,
            },
            "capture": {"folder": {"path": str(inbox), "settle_s": 0.05, "poll_interval_s": 0.1}},
            "index": {"commit_every": 64, "commit_interval_s": 0.5},
            "http": {"port": 0},
        },
        "bench",
    )
    d = Daemon(cfg)
    d.start()
    return d


def ingest(d: Daemon, images: Path, inbox: Path, n: int) -> dict[str, int]:
    """Copy the split's images into the inbox; wait until every one is searchable. Returns
    record id -> image index."""
    names = sorted(p.name for p in images.iterdir())[:n]
    for name in names:
        shutil.copy(images / name, inbox / name)
    deadline = time.monotonic() + 60 + 2 * n
    while d.indexes.keyword.num_docs < n or d.store.count_due("index"):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {d.indexes.keyword.num_docs} of {n} images indexed in time")
        time.sleep(0.5)
    position = {name: i for i, name in enumerate(names)}
    return {r.id: position[r.source_name] for r in d.store.iter_analysed()}


def ask(client: httpx.Client, q: str, mode: str, fusion: str = "rrf") -> list[str]:
    r = client.get(
        "/search", params={"q": q, "mode": mode, "fusion": fusion, "limit": 10, "facets": "false"}
    )
    r.raise_for_status()
    return [h["id"] for h in r.json()["results"]]


def precision(client: httpx.Client, qs: QuerySet, index_of: dict[str, int]) -> dict[str, Any]:
    """Mean precision@10 per kind and mode (hybrid with both fusions), beside chance."""
    out: dict[str, Any] = {}
    runs = [("keyword", "rrf"), ("semantic", "rrf"), ("hybrid", "rrf"), ("hybrid", "mix")]
    for kind, queries in qs.all().items():
        row: dict[str, Any] = {
            "queries": len(queries),
            "chance": float(np.mean([chance(r) for r in queries.values()])),
        }
        for mode, fusion in runs:
            name = mode if mode != "hybrid" else f"hybrid_{fusion}"
            scores = {
                q: precision_at([index_of[i] for i in ask(client, q, mode, fusion)], rel)
                for q, rel in queries.items()
            }
            row[name] = float(np.mean(list(scores.values()))) if scores else None
            row.setdefault("per_query", {})[name] = scores
            if name == "hybrid_rrf":
                row["worst"] = dict(sorted(scores.items(), key=lambda kv: kv[1])[:5])
        out[kind] = row
    return out


def never_emitted(d: Daemon, qs: QuerySet, result: dict[str, Any]) -> dict[str, Any]:
    """The single words of the query set that no generated caption holds: keyword search
    cannot find them; the semantic side must."""
    emitted = {
        w
        for r in d.store.iter_analysed()
        for w in tokenize((r.output("caption") or {}).get("text", ""))
    }
    words = [q for q in qs.words if " " not in q and q not in emitted]
    if not words:
        return {"words": []}
    per = result["words"]["per_query"]
    return {
        "words": words,
        **{m: float(np.mean([per[m][w] for w in words])) for m in ("keyword", "hybrid_rrf")},
    }


def pointing(
    client: httpx.Client, ds: Any, index_of: dict[str, int], domain: str
) -> dict[str, Any]:
    """Pointing game of single-noun queries on `/images/{id}/match`."""
    if ds.instances is None or ds.grounding is None:
        return {}
    id_of = {i: rid for rid, i in index_of.items()}
    hits, shares = [], []
    for i in sorted(id_of):
        if not ds.instances[i]:
            continue
        cells = None
        for word, named in named_nouns(ds.captions[i], ds.grounding[i], domain).items():
            got = client.get(f"/images/{id_of[i]}/match", params={"q": word}).json()
            if cells is None:
                cells = grid_regions(np.stack([c for _, c in ds.instances[i]]), got["grid"])
            region = cells[sorted(named)].max(axis=0) > 0
            hits.append(bool(region[int(np.argmax(got["words"][0]["map"]))]))
            shares.append(float(region.mean()))
        if len(hits) >= POINTING_CALLS:
            break
    return {"n": len(hits), "pointing": float(np.mean(hits)), "chance": float(np.mean(shares))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="chest-int8", help="shipped bundle name or folder")
    ap.add_argument("--data", type=Path, help="held-out data folder (default: generated)")
    ap.add_argument("--n", type=int, default=400, help="images to analyse and search")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    domain = load_bundle(args.bundle).doc.domain
    with tempfile.TemporaryDirectory(prefix="s3e-quality-") as tmp:
        root = Path(tmp)
        data = args.data or write_dataset(domain, args.n, HELD_OUT_SEED[domain], root / "split")
        ds = load_dataset(data, 64, 1 if domain == "chest" else 3, limit=args.n)
        (root / "inbox").mkdir()
        d = start_daemon(args.bundle, root / "data", root / "inbox")
        try:
            t0 = time.monotonic()
            index_of = ingest(d, Path(data) / "images", root / "inbox", len(ds))
            vocab = d.bundle.asset("embedder_words")["vocab"]
            qs = build_queries(ds.captions, ds.grounding, vocab)
            with httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=30) as client:
                result = precision(client, qs, index_of)
                result["never_emitted"] = never_emitted(d, qs, result)
                result["pointing"] = pointing(client, ds, index_of, domain)
        finally:
            d.stop()
    for row in result.values():
        if isinstance(row, dict):
            row.pop("per_query", None)
    report = {
        "bundle": args.bundle,
        "domain": domain,
        "images": len(ds),
        "seconds": round(time.monotonic() - t0, 1),
        "machine": platform.machine(),
        **result,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

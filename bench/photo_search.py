"""A photos bundle through a real daemon, on the hand-labelled real photographs of
`bench/photo_set.py` and drawn or abstract distractors, measured over HTTP.

    S3E_ASSETS=/tmp/s3e-assets .venv/bin/python bench/photo_search.py \\
        --json bench/results/photo-search.json

A daemon (in this process, its HTTP API on a free port, `model.bundle` as given) watches a
folder; every photograph (`photo_set.PHOTOS`) and distractor (`photo_set.distractors`) is
dropped in it, and the bench waits, woken by the daemon's analysis hooks, until all are
indexed. Then, over HTTP only:

- labels (`/records/{id}`, as the page shows them): a photograph is labelled right when one
  of its hand words is the word, or one of the other words, of one of its first three labels;
- search (`/search?q=`): R-precision of each everyday word, synonym and one-typo word of
  `photo_set` against its hand-written relevant photographs (chance: relevant / images
  indexed), and whether any distractor comes in the top 5;
- pointing game (`/images/{id}/match?q=`): for each photograph with a box, whether the peak
  cell of its first one-word hand word's heat-map lies inside the box (no map: a miss);
- anomaly (`/records/{id}`): the AUROC of the distractors scoring above the photographs.

Each figure is given overall and for the "dev" and "test" photographs (distractors are in
both); grayscale photographs are indexed with the rest and their label and pointing figures
are also given apart. Nothing here is tuned to the set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from photo_set import (
    PHOTOS,
    QUERIES,
    SYNONYMS,
    TYPOS,
    Box,
    Photo,
    by_split,
    distractors,
    peak_in_box,
    photo_box,
    photo_image,
    point_word,
    right_in_top3,
)

from edge.config import parse_config
from edge.daemon import Daemon

INDEX_TIMEOUT_S = 900.0
"""All images analysed and indexed by then, or the bench fails (about 100 images, 2 cores)."""
SPLITS = ("all", "dev", "test")


def start_daemon(bundle: str, root: Path, catch_all: str = "", workers: int = 1) -> Daemon:
    model = {"bundle": bundle, "catch_all": catch_all, "accelerator": "cpu", "threads": 1}
    cfg = parse_config(
        {
            "device_id": "photo-bench",
            "data_dir": str(root / "data"),
            "model": {**model, "workers": workers},
            "capture": {
                "folder": {"path": str(root / "inbox"), "settle_s": 0.1, "poll_interval_s": 0.2}
            },
            "index": {"commit_every": 8, "commit_interval_s": 0.2},
            "http": {"port": 0},
        },
        "photo-bench",
    )
    d = Daemon(cfg)
    d.start()
    return d


def drop_and_wait(d: Daemon, files: dict[str, tuple[bytes, str]]) -> float:
    """Each file into the watched folder (written aside, then renamed in), then wait until
    every one is indexed: woken by each analysis and by the daemon catching up, checking at
    least every half second (the index commits on its own interval)."""
    woken = threading.Event()
    d.hooks.on_analysed.append(woken.set)
    d.hooks.on_caught_up.append(woken.set)
    inbox = Path(d.cfg.capture.folder.path)
    inbox.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    for name, (data, ext) in files.items():
        part = inbox / f"{name}.{ext}.part"
        part.write_bytes(data)
        part.rename(inbox / f"{name}.{ext}")
    n = len(files)
    while not (d.indexes.keyword.num_docs >= n and d.store.count_due("index") == 0):
        if time.monotonic() - t0 > INDEX_TIMEOUT_S:
            raise TimeoutError(
                f"{d.indexes.keyword.num_docs} of {n} images indexed after {INDEX_TIMEOUT_S} s "
                f"(store: {d.store.counts()})"
            )
        woken.wait(0.5)
        woken.clear()
    return time.monotonic() - t0


def r_precision(ranked: list[str], relevant: set[str]) -> float:
    r = len(relevant)
    return len(set(ranked[:r]) & relevant) / r


def search_rows(
    c: httpx.Client,
    table: dict[str, tuple[str, ...]],
    kind: str,
    rid: dict[str, str],
    split_of: dict[str, str],
    drawn: set[str],
    name_of: dict[str, str],
) -> list[dict[str, Any]]:
    """One row per query: its ranking (as photo names), R-precision overall and per split
    (the ranking and the relevant set cut to that split's photos and the distractors),
    chance, and the distractors in its top 5."""
    rows = []
    for q, rel in table.items():
        got = c.get("/search", params={"q": q, "limit": 200}).json()
        ranked = [name_of.get(h["id"], h["id"]) for h in got["results"]]
        row: dict[str, Any] = {
            "query": q,
            "kind": kind,
            "relevant": list(rel),
            "top5": ranked[:5],
            "found": len(ranked),
            "drawn_in_top5": [n for n in ranked[:5] if n in drawn],
            "message": got.get("message"),
        }
        if kind == "typo":
            row["of"] = TYPOS[q]
        for split in SPLITS:
            keep = [n for n in ranked if split == "all" or split_of.get(n, split) == split]
            want = {n for n in rel if split == "all" or split_of[n] == split}
            n_split = sum(
                split == "all" or split_of.get(n, split) == split for n in name_of.values()
            )
            if want:
                row[f"r_precision_{split}"] = round(r_precision(keep, want), 3)
                row[f"chance_{split}"] = round(len(want) / n_split, 3)
        rows.append(row)
    return rows


def mean_of(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    vals = [r[key] for r in rows if key in r]
    return {"n": len(vals), "mean": round(statistics.fmean(vals), 3) if vals else None}


def summarise_search(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        split: {
            "r_precision": mean_of(rows, f"r_precision_{split}"),
            "chance": mean_of(rows, f"chance_{split}"),
        }
        for split in SPLITS
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundle", default="photos-int8")
    p.add_argument("--json", type=Path, default=Path("bench/results/photo-search.json"))
    p.add_argument("--cache", type=Path, default=None, help="the asset cache ($S3E_ASSETS)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    files: dict[str, tuple[bytes, str]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for ph in PHOTOS:
        data, ext, im = photo_image(ph, args.cache)
        files[ph.id], sizes[ph.id] = (data, ext), im.size
    drawn = distractors()
    for name, png in drawn.items():
        files[f"drawn-{name}"] = (png, "png")
    rid = {name: hashlib.sha256(data).hexdigest() for name, (data, _) in files.items()}
    name_of = {v: k for k, v in rid.items()}
    assert len(name_of) == len(rid), "every image's bytes differ"
    drawn_names = {f"drawn-{n}" for n in drawn}
    split_of = {ph.id: ph.split for ph in PHOTOS}

    with tempfile.TemporaryDirectory(prefix="s3e-photo-search-") as tmp:
        d = start_daemon(args.bundle, Path(tmp))
        try:
            seconds = drop_and_wait(d, files)
            print(f"{len(files)} images indexed by {args.bundle} in {seconds:.0f} s")
            with httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=60) as c:
                result = measure(c, args.bundle, rid, name_of, split_of, drawn_names, sizes)
        finally:
            d.stop()
    result["index_seconds"] = round(seconds, 1)
    result["images"] = {"photos": len(PHOTOS), "distractors": len(drawn)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    report(result)


def shown_labels(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's labels as the page shows them (every output's: a face's "person", then
    the classifier's), each with the classifier's other words for it."""
    classified = ((rec.get("outputs") or {}).get("classify") or {}).get("labels") or []
    also = {lab["word"]: lab.get("also") or [] for lab in classified}
    return [{"word": lab["name"], "also": also.get(lab["name"], [])} for lab in rec["labels"]]


def measure(
    c: httpx.Client,
    bundle: str,
    rid: dict[str, str],
    name_of: dict[str, str],
    split_of: dict[str, str],
    drawn: set[str],
    sizes: dict[str, tuple[int, int]],
) -> dict[str, Any]:
    labels, pointing = [], []
    for ph in PHOTOS:
        rec = c.get(f"/records/{rid[ph.id]}").json()
        labs = shown_labels(rec)
        labels.append(
            {
                **ph.tags,
                "words": list(ph.words),
                "labels": [lab["word"] for lab in labs[:5]],
                "right_in_top3": right_in_top3(labs, ph.words),
            }
        )
        box = photo_box(ph)
        if box is not None:
            pointing.append(point_row(c, ph, rid[ph.id], box, sizes[ph.id]))
    args = (rid, split_of, drawn, name_of)
    queries = search_rows(c, QUERIES, "everyday", *args)
    synonyms = search_rows(c, SYNONYMS, "synonym", *args)
    typos = search_rows(c, {t: QUERIES[w] for t, w in TYPOS.items()}, "typo", *args)
    everything = queries + synonyms + typos
    return {
        "bundle": bundle,
        "anomaly": anomaly_ranking(c, rid, drawn),
        "labels": {"summary": by_split(labels, "right_in_top3"), "rows": labels},
        "search": {
            "everyday": summarise_search(queries),
            "synonyms": summarise_search(synonyms),
            "typos": summarise_search(typos),
            "drawn_in_top5": sorted({q["query"] for q in everything if q["drawn_in_top5"]}),
            "rows": everything,
        },
        "pointing": {
            "summary": by_split(pointing, "hit"),
            "where_the_word_has_a_map": by_split([r for r in pointing if r["has_map"]], "hit"),
            "rows": pointing,
        },
    }


def anomaly_ranking(c: httpx.Client, rid: dict[str, str], drawn: set[str]) -> dict[str, Any]:
    """How well the anomaly score tells the drawn images from the photographs: the AUROC of
    "a drawn image scores higher" (0.5: chance), and each side's median."""
    score = {n: c.get(f"/records/{r}").json()["anomaly"] for n, r in rid.items()}
    pos = np.array([v for n, v in score.items() if n in drawn], float)
    neg = np.array([v for n, v in score.items() if n not in drawn], float)
    wins = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    return {
        "auroc_drawn_over_photos": round(float(wins), 3),
        "median_drawn": round(float(np.median(pos)), 3),
        "median_photos": round(float(np.median(neg)), 3),
        "chance": 0.5,
    }


def point_row(
    c: httpx.Client, ph: Photo, rid: str, box: Box, size: tuple[int, int]
) -> dict[str, Any]:
    word = point_word(ph)
    got = c.get(f"/images/{rid}/match", params={"q": word}).json()
    maps = got.get("words") or []
    hit = bool(maps) and peak_in_box(maps[0]["map"], int(got["grid"]), box, size)
    return {
        **ph.tags,
        "word": word,
        "has_map": bool(maps),
        "via": maps[0].get("via") if maps else None,
        "hit": hit,
    }


def report(res: dict[str, Any]) -> None:
    def share(s: dict[str, Any]) -> str:
        return ", ".join(
            f"{k} {v['hits']}/{v['n']} = {v['share']:.2f}" for k, v in s.items() if v["n"]
        )

    print(f"labels, right word in the top 3: {share(res['labels']['summary'])}")
    print(f"anomaly, drawn above photographs: {res['anomaly']}")
    for r in res["labels"]["rows"]:
        if not r["right_in_top3"]:
            print(f"   -- {r['photo']} ({r['split']}): {r['labels'][:3]} (want {r['words']})")
    s = res["search"]
    for kind in ("everyday", "synonyms", "typos"):
        parts = [
            f"{split} {v['r_precision']['mean']} (chance {v['chance']['mean']}, "
            f"{v['r_precision']['n']} queries)"
            for split, v in s[kind].items()
        ]
        print(f"R-precision, {kind}: " + "; ".join(parts))
    for q in s["rows"]:
        rp = q.get("r_precision_all")
        if (rp is not None and rp < 0.5) or q["drawn_in_top5"]:
            print(
                f"   -- {q['kind']} {q['query']!r}: R-precision {rp}, top 5 {q['top5']}"
                + (f", drawn {q['drawn_in_top5']}" if q["drawn_in_top5"] else "")
            )
    print(f"a drawn image in the top 5 of: {s['drawn_in_top5'] or 'no query'}")
    print(f"pointing game: {share(res['pointing']['summary'])}")
    print(f"   where the word has a map: {share(res['pointing']['where_the_word_has_a_map'])}")
    for r in res["pointing"]["rows"]:
        if not r["hit"]:
            print(f"   -- {r['photo']} {r['word']!r}: {'missed' if r['has_map'] else 'no map'}")


if __name__ == "__main__":
    main()

"""End-to-end throughput of the daemon, per shipped bundle, against pure model inference.

    python bench/edge_e2e.py --json bench/results/edge-e2e.json

For each bundle: N generated images of the bundle's domain (for photos, crops of real
photographs), as camera-like JPEGs (--size, default 512x512), go through a real in-process
daemon (ingest: sha256, decode, preprocess, thumbnail, fsynced store with group commit;
analysis on TFLite; Tantivy index with batched commits), handed to the ingest pool as the
folder source does (at most 8 in flight). Reported: images/second from the first image accepted
to the last one searchable, the mean of each stage, and the daemon's rate over the models-alone
rate (the same Analyser, called in a loop on preprocessed arrays, in one process, with 2
interpreter threads). Configurations: 1 analysis worker with 2 interpreter threads, 1 with 1,
and 2 workers with 1 thread each. Then the re-analysis rate: the same records analysed again
with the other bundle of the domain, through a bundle swap.

The speed of a shared 2-core machine drifts within a minute, so the ratio is not
one daemon run over one models-alone run minutes apart: `--rounds` times, the models alone run
right before and right after a daemon run (2 workers x 1 thread), and the reported ratio is
the median over rounds of the daemon's rate over the mean of its two neighbours. For context,
the models alone in two processes of one thread each (the daemon's layout, without the daemon)
are reported too.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.analysis.analyser import Analyser
from edge.analysis.bundle import load_bundle
from edge.config import parse_config
from edge.daemon import Daemon
from edge.ingest.imaging import decode, preprocess
from models.data.dataset import write_dataset
from models.photos.data import write_photo_set

BUNDLES = ["chest-int8", "chest-float16", "shapes-int8", "shapes-float16"]
OTHER = {
    "chest-int8": "chest-float16",
    "chest-float16": "chest-int8",
    "shapes-int8": "shapes-float16",
    "shapes-float16": "shapes-int8",
    "photos-int8": "photos-float16",
    "photos-float16": "photos-int8",
}
"""The bundle each one's records are re-analysed with."""


def camera_jpegs(domain: str, n: int, size: int, tmp: Path) -> list[bytes]:
    """`n` JPEGs of the domain: generated scenes, or for photos crops of the registry's
    photographs (`models.photos.data`)."""
    if domain == "photos":
        root = write_photo_set(tmp / domain, n, 5151, size)
    else:
        root = write_dataset(domain, n, 5151, tmp / domain)
    out = []
    for p in sorted((root / "images").glob("*.png"))[:n]:
        buf = io.BytesIO()
        Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(
            buf, "JPEG", quality=90
        )
        out.append(buf.getvalue())
    return out


def model_inputs(bundle_name: str, images: list[bytes]) -> list[np.ndarray]:
    spec = load_bundle(bundle_name).doc.preprocessing.model_dump()
    return [preprocess(decode(b, 10**8, target=256).image, spec) for b in images]


def pure_inference(
    bundle_name: str, xs: list[np.ndarray], threads: int, done: Any = None
) -> dict[str, float]:
    """The models alone: no decode, no store, no index. `done`: a queue for the result (when
    run in a child process)."""
    cfg = parse_config(
        {"model": {"bundle": bundle_name, "accelerator": "cpu", "threads": threads}}
    ).model
    analyser = Analyser(load_bundle(bundle_name), cfg)
    analyser.analyse(xs[0])
    t0 = time.perf_counter()
    for x in xs:
        analyser.analyse(x)
    total = time.perf_counter() - t0
    out = {"seconds": total, "images_per_s": len(xs) / total}
    if done is not None:
        done.put(out)
    return out


def pure_two_processes(bundle_name: str, xs: list[np.ndarray]) -> dict[str, float]:
    """The models alone in the daemon's layout: two processes, one thread each, half each."""
    ctx = mp.get_context("spawn")
    done = ctx.Queue()
    procs = [
        ctx.Process(target=pure_inference, args=(bundle_name, xs[i::2], 1, done)) for i in range(2)
    ]
    for p in procs:
        p.start()
    seconds = max(done.get()["seconds"] for _ in procs)
    for p in procs:
        p.join()
    return {"seconds": seconds, "images_per_s": len(xs) / seconds}


def end_to_end(
    bundle_name: str,
    images: list[bytes],
    workers: int,
    threads: int,
    tmp: Path,
    other: str | None = None,
) -> dict[str, Any]:
    """`other`: a bundle to swap to afterwards, timing the re-analysis of every record."""
    cfg = parse_config(
        {
            "data_dir": tempfile.mkdtemp(prefix=f"{bundle_name}-{workers}x{threads}-", dir=tmp),
            "model": {
                "bundle": bundle_name,
                "catch_all": "",
                "accelerator": "cpu",
                "threads": threads,
                "workers": workers,
            },
            "capture": {"folder": {"enabled": False}},
            "http": {"enabled": False},
            "index": {"commit_every": 64, "commit_interval_s": 0.5},
            "reanalysis": {"share": 1.0},
        }
    )
    d = Daemon(cfg)
    d.start()
    t0 = time.perf_counter()

    def feed() -> None:
        pending: list[Any] = []
        for i, data in enumerate(images):
            pending.append(d.ingestor.submit(data, "bench", f"{i}.jpg"))
            if len(pending) >= 8:  # the folder source's cap
                pending.pop(0).result()
        for f in pending:
            f.result()

    feeder = threading.Thread(target=feed)
    feeder.start()
    while d.store.count_due("index") or d.indexes.keyword.num_docs < len(images):
        time.sleep(0.005)  # two cheap reads; polling the whole store would cost the daemon
    wall = time.perf_counter() - t0
    feeder.join()
    recs = list(d.store.iter_analysed())
    stages: dict[str, list[float]] = {}
    for r in recs:
        for k, v in r.timings.items():
            stages.setdefault(k.removesuffix("_ms"), []).append(v)
    text = d.metrics.render().decode()
    for stage in ("decode", "preprocess", "store", "index_commit"):
        s = _histogram_mean(text, stage)
        if s is not None:
            stages.setdefault(stage, []).append(s)
    out = {
        "workers": workers,
        "threads": threads,
        "seconds": wall,
        "images_per_s": len(images) / wall,
        "stage_mean_ms": {k: float(np.mean(v)) for k, v in stages.items()},
    }
    if other is not None:
        t0 = time.perf_counter()
        d.swapper.swap(other)
        while d.store.count_stale(d.pool.version) or d.store.count_due("index"):
            time.sleep(0.01)  # not `progress()`: it is computed at most every 2 s
        out["reanalysis_images_per_s"] = len(images) / (time.perf_counter() - t0)
    d.stop()
    return out


def _histogram_mean(text: str, stage: str) -> float | None:
    total = count = None
    for line in text.splitlines():
        if line.startswith(f's3e_stage_seconds_sum{{stage="{stage}"}}'):
            total = float(line.split()[-1])
        if line.startswith(f's3e_stage_seconds_count{{stage="{stage}"}}'):
            count = float(line.split()[-1])
    return None if not count or total is None else total / count * 1e3


def bench_bundle(name: str, images: list[bytes], rounds: int, tmp: Path) -> dict[str, Any]:
    """Each configuration once, then `rounds` daemon runs between models-alone runs."""
    xs = model_inputs(name, images)
    runs = [end_to_end(name, images, w, t, tmp) for w, t in ((1, 1), (1, 2))]
    pures = [pure_inference(name, xs, threads=2)]
    ratios = []
    for r in range(rounds):
        last = r == rounds - 1
        runs.append(end_to_end(name, images, 2, 1, tmp, OTHER.get(name) if last else None))
        pures.append(pure_inference(name, xs, threads=2))
        neighbours = (pures[-2]["images_per_s"] + pures[-1]["images_per_s"]) / 2
        ratios.append(runs[-1]["images_per_s"] / neighbours)
    two = pure_two_processes(name, xs)
    best = max(runs, key=lambda r: r["images_per_s"])
    out = {
        "pure_inference": {
            "images_per_s": statistics.median(p["images_per_s"] for p in pures),
            "runs": [p["images_per_s"] for p in pures],
        },
        "pure_two_processes": two,
        "end_to_end": runs,
        "best_images_per_s": best["images_per_s"],
        "round_ratios": ratios,
        "daemon_over_models": statistics.median(ratios),
        "reanalysis_images_per_s": runs[-1].get("reanalysis_images_per_s"),
    }
    print(
        f"{name}: models alone {out['pure_inference']['images_per_s']:.1f} img/s "
        f"(2 processes: {two['images_per_s']:.1f}); end to end "
        + ", ".join(f"{r['workers']}x{r['threads']}: {r['images_per_s']:.1f}" for r in runs)
        + f" img/s; daemon / models = {out['daemon_over_models']:.2f} (rounds: "
        + ", ".join(f"{x:.2f}" for x in ratios)
        + f"); re-analysis {out['reanalysis_images_per_s'] or 0:.1f} img/s"
    )
    stages = best["stage_mean_ms"]
    print("   stage means (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    return out


def cpu_model() -> str:
    """The CPU's name as Linux reports it: int8 against float16 turns on its instruction set
    (the same bundles swap order between hosts), so a figure is read with it."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=500, help="images per bundle")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="daemon runs (2x1) between models-alone runs, per bundle",
    )
    p.add_argument("--size", type=int, default=512, help="side of the camera-like JPEGs")
    p.add_argument("--bundles", nargs="+", default=BUNDLES)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform()},
        "images": args.n,
        "image_size": args.size,
        "bundles": {},
    }
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        data: dict[str, list[bytes]] = {}
        for name in args.bundles:
            domain = load_bundle(name).doc.domain
            if domain not in data:
                data[domain] = camera_jpegs(domain, args.n, args.size, tmp / "data")
            results["bundles"][name] = bench_bundle(name, data[domain], args.rounds, tmp)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

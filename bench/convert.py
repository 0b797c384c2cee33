"""Benchmark the converted models: size and latency per precision, against Keras and onnxruntime.

    python bench/convert.py --models models/chest --json bench/results/convert-chest.json

For every device graph of the models folder and every precision: file size, median and p95
latency of one call on ai-edge-litert (2 threads, XNNPACK), and the ratios int8/float32 and
float16/float32 (size and latency). The same graph in Keras (batch 1, `model(x,
training=False)` inside a compiled tf.function) and in onnxruntime is timed in the same process
and reported as a ratio against LiteRT float32. Inputs are realistic (from a generated split).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from converter.export import PRECISIONS, device_graphs, iter_feeds, to_tflite
from converter.faithfulness import graph_feeds
from converter.onnx_export import export_onnx
from edge.analysis.runtime import ModelRunner
from models.config import ModelsConfig
from models.data.dataset import load_dataset, write_dataset

log = logging.getLogger("bench.convert")


def timed(fn: Callable[[], object], repeats: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return {"median_ms": float(np.median(samples)), "p95_ms": float(np.percentile(samples, 95))}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = ModelsConfig.load(args.models)
    graphs = {g.name: g for g in device_graphs(args.models, cfg)}
    with tempfile.TemporaryDirectory(prefix="s3e-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        data = write_dataset(cfg.domain, 64, 5005, tmp / "data", cfg.image.size)
        ds = load_dataset(data, cfg.image.size, cfg.image.channels)
        max_len = cfg.captioner.max_len if cfg.captioner else 1
        feeds = graph_feeds(graphs, ds.images, max_len, limit=64)
        results: dict[str, dict[str, object]] = {}
        for name, graph in graphs.items():
            feed = feeds[name][0]
            row: dict[str, object] = {}
            for precision in PRECISIONS:
                path = tmp / f"{name}-{precision}.tflite"
                path.write_bytes(to_tflite(graph, precision, iter_feeds(feeds[name])))
                runner = ModelRunner(path, graph.outputs, args.threads)
                row[precision] = {
                    "bytes": path.stat().st_size,
                    **timed(lambda runner=runner, feed=feed: runner(**feed), args.repeats),
                }
            model, names = graph.model, graph.inputs
            call = tf.function(
                lambda *xs, model=model: model(list(xs) if len(xs) > 1 else xs[0], training=False)
            )
            tensors = [tf.constant(feed[n]) for n in names]
            row["keras"] = timed(lambda call=call, tensors=tensors: call(*tensors), args.repeats)
            import onnxruntime as ort

            onnx_path = tmp / f"{name}.onnx"
            export_onnx(graph, onnx_path, [feed])
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            row["onnxruntime"] = timed(
                lambda sess=sess, feed=feed: sess.run(None, feed), args.repeats
            )
            f32 = row["float32"]
            row["ratios"] = {
                "size_float32_over_int8": f32["bytes"] / row["int8"]["bytes"],
                "size_float32_over_float16": f32["bytes"] / row["float16"]["bytes"],
                "speedup_int8_vs_float32": f32["median_ms"] / row["int8"]["median_ms"],
                "speedup_float16_vs_float32": f32["median_ms"] / row["float16"]["median_ms"],
                "speedup_dynamic_vs_float32": f32["median_ms"] / row["dynamic"]["median_ms"],
                "keras_over_litert_float32": row["keras"]["median_ms"] / f32["median_ms"],
                "onnxruntime_over_litert_float32": row["onnxruntime"]["median_ms"]
                / f32["median_ms"],
            }
            results[name] = row
            r = row["ratios"]
            log.info(
                "%-18s f32 %7.3f ms %8.0f KB | int8 %.2fx smaller %.2fx faster | "
                "fp16 %.2fx smaller %.2fx faster | keras %.1fx, onnxruntime %.2fx of LiteRT f32",
                name,
                f32["median_ms"],
                f32["bytes"] / 1024,
                r["size_float32_over_int8"],
                r["speedup_int8_vs_float32"],
                r["size_float32_over_float16"],
                r["speedup_float16_vs_float32"],
                r["keras_over_litert_float32"],
                r["onnxruntime_over_litert_float32"],
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "convert",
                "models": str(args.models),
                "threads": args.threads,
                "repeats": args.repeats,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "tensorflow": tf.__version__,
                "results": results,
            },
            indent=1,
        )
        + "\n"
    )
    log.info("wrote %s", args.json)


if __name__ == "__main__":
    main()

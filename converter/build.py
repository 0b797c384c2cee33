"""`s3e-convert`'s work: export, quantize, check, measure and write one model bundle.

Everything is written into a temporary sibling of `--out` and renamed into place at the very
end, so a failed or interrupted conversion never leaves a half-written bundle behind.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from converter.export import (
    PRECISIONS,
    RECURRENT_IN_INT8,
    Graph,
    device_graphs,
    iter_feeds,
    to_tflite,
)
from converter.faithfulness import device_task_metrics, drops, graph_feeds, tensor_errors
from converter.gpu import check_model
from converter.tflite_model import tensor_types
from edge.bundle import BUNDLE_FILE, FORMAT_VERSION, load_bundle, sha256_file
from edge.inference import BundleModels
from edge.runtime import ModelRunner
from models.config import ModelsConfig
from models.data.dataset import Dataset, load_dataset, write_dataset
from models.data.domains import DOMAINS
from models.data.tokens import Vocabulary
from models.evaluate import eval_captioner, eval_segmenter, eval_vae
from models.latent import LATENT_FILE
from models.store import load_captioner, load_segmenter

log = logging.getLogger(__name__)
CALIBRATION_SEED, EVAL_SEED = 3003, 4004
MAX_DROP_POINTS = 1.0


class ConversionError(RuntimeError):
    """A conversion that must not produce a bundle; the message says what and why."""


@dataclass
class Options:
    models: Path
    precision: str
    out: Path
    calibration: Path | None = None
    eval_data: Path | None = None
    onnx: bool = False
    accept_drop: bool = False
    calibration_n: int = 100
    eval_n: int = 200
    name: str | None = None
    threads: int = 2
    overwrite: bool = False
    progress: bool = True


def _scheme(graph: Graph, precision: str) -> str:
    if graph.recurrent and precision == "int8":
        return {"int16x8": "int16 activations, int8 weights"}.get(
            RECURRENT_IN_INT8, f"{RECURRENT_IN_INT8} (the recurrent step is kept float)"
        )
    return precision


def _split(
    cfg: ModelsConfig, given: Path | None, seed: int, n: int, scratch: Path, what: str
) -> Dataset:
    if given is None:
        if cfg.domain not in DOMAINS:
            raise ConversionError(
                f"{what}: domain {cfg.domain!r} has no generator; pass a data folder"
            )
        given = write_dataset(cfg.domain, n, seed, scratch / what, cfg.image.size)
    return load_dataset(given, cfg.image.size, cfg.image.channels, limit=n)


def _io(runner: ModelRunner, graph: Graph) -> dict[str, list[dict[str, Any]]]:
    sig = runner.interpreter.get_signature_runner()

    def describe(details: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for key, d in details.items():
            q = d.get("quantization_parameters", {})
            scales = np.asarray(q.get("scales", []))
            zeros = np.asarray(q.get("zero_points", []))
            out.append(
                {
                    "name": names.get(key, key),
                    "tflite_name": key,
                    "shape": [int(s) for s in d["shape"]],
                    "dtype": np.dtype(d["dtype"]).name,
                    "quantization": {"scale": scales.tolist(), "zero_point": zeros.tolist()},
                }
            )
        return out

    outputs = describe(
        sig.get_output_details(), {f"output_{i}": n for i, n in enumerate(graph.outputs)}
    )
    order = {n: i for i, n in enumerate(graph.outputs)}
    inputs = describe(sig.get_input_details(), {})
    order_in = {n: i for i, n in enumerate(graph.inputs)}
    return {
        "inputs": sorted(inputs, key=lambda d: order_in[d["name"]]),
        "outputs": sorted(outputs, key=lambda d: order[d["name"]]),
    }


def _reference_metrics(folder: Path, cfg: ModelsConfig, ds: Dataset) -> dict[str, Any]:
    """The Keras models' task metrics on the same split (the float32 reference)."""
    ref: dict[str, Any] = {}
    if cfg.captioner:
        report = eval_captioner(load_captioner(folder, cfg), ds, cfg.domain, None)
        ref["captioner"] = {k: v for k, v in report.items() if isinstance(v, float)}
        if "grounding" in report:
            ref["captioner"]["grounding"] = report["grounding"]["classes"]
    if cfg.segmenter and ds.masks is not None:
        ref["segmenter"] = {
            "mIoU": eval_segmenter(load_segmenter(folder, cfg), ds, cfg.segmenter.class_names)[
                "mIoU"
            ]
        }
    if cfg.vae:
        vae = eval_vae(folder, cfg, ds)
        keep = ("label_macro_f1", "anomaly_auroc", "out_of_domain_rate")
        ref["vae"] = {k: vae[k] for k in keep if k in vae}
    return ref


def _versions() -> dict[str, str]:
    out = {"tensorflow": tf.__version__}
    for dist in ("s3e", "keras", "ai-edge-litert", "tf2onnx", "onnx", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def convert(opts: Options) -> dict[str, Any]:
    """Build the bundle `opts` describes; returns its `bundle.json` document."""
    if opts.precision not in PRECISIONS:
        raise ConversionError(f"unknown precision {opts.precision!r}; choose one of {PRECISIONS}")
    out = Path(opts.out)
    if out.exists() and any(out.iterdir()) and not opts.overwrite:
        raise ConversionError(
            f"{out} exists and is not empty; pass --overwrite or choose another --out"
        )
    cfg = ModelsConfig.load(opts.models)
    graphs = {g.name: g for g in device_graphs(opts.models, cfg)}
    if not graphs:
        raise ConversionError(f"{opts.models}: no trained models (weights files) found")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    scratch = Path(tempfile.mkdtemp(prefix="s3e-convert-"))
    try:
        doc = _build(opts, cfg, graphs, tmp, scratch)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return doc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _build(
    opts: Options, cfg: ModelsConfig, graphs: dict[str, Graph], tmp: Path, scratch: Path
) -> dict[str, Any]:
    max_len = cfg.captioner.max_len if cfg.captioner else 1
    calib = _split(
        cfg, opts.calibration, CALIBRATION_SEED, opts.calibration_n, scratch, "calibration"
    )
    held_out = _split(cfg, opts.eval_data, EVAL_SEED, opts.eval_n, scratch, "held-out")
    calib_feeds = graph_feeds(graphs, calib.images, max_len, limit=opts.calibration_n * max_len)
    eval_feeds = graph_feeds(graphs, held_out.images, max_len, limit=30)
    if opts.onnx:
        (tmp / "onnx").mkdir()

    models: dict[str, Any] = {}
    bar = tqdm(
        graphs.values(), desc=f"convert {opts.precision}", unit="model", disable=not opts.progress
    )
    for graph in bar:
        bar.set_postfix_str(graph.name)
        log.info("%s: exporting to TFLite (%s)", graph.name, opts.precision)
        data = to_tflite(graph, opts.precision, iter_feeds(calib_feeds[graph.name]))
        path = tmp / f"{graph.name}.tflite"
        path.write_bytes(data)
        runner = ModelRunner(path, graph.outputs, opts.threads)
        gpu = check_model(data)
        entry = {
            "file": path.name,
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "float_io": True,
            "scheme": _scheme(graph, opts.precision),
            "tensor_types": tensor_types(data),
            **_io(runner, graph),
            "gpu": gpu.to_dict(),
            "error_vs_keras": tensor_errors(graph, runner, eval_feeds[graph.name]),
        }
        if not gpu.delegable:
            log.warning(
                "%s: %d op(s) would fall back to the CPU on the GPU delegate: %s",
                graph.name,
                len(gpu.fallback),
                sorted({p.op for p in gpu.fallback}),
            )
        if opts.onnx:
            from converter.onnx_export import export_onnx

            onnx_path = tmp / "onnx" / f"{graph.name}.onnx"
            entry["onnx"] = {
                "file": f"onnx/{onnx_path.name}",
                **export_onnx(graph, onnx_path, eval_feeds[graph.name][:10]),
            }
        models[graph.name] = entry

    assets: dict[str, Any] = {}
    if cfg.captioner:
        (tmp / "vocab.json").write_text(json.dumps(cfg.captioner.vocab))
        assets["vocab"] = {"file": "vocab.json"}
    if cfg.vae:
        shutil.copy(Path(opts.models) / LATENT_FILE, tmp / LATENT_FILE)
        assets["vae_latent"] = {"file": LATENT_FILE}
    shutil.copy(Path(opts.models) / "config.json", tmp / "models_config.json")
    assets["models_config"] = {"file": "models_config.json"}
    for a in assets.values():
        a["sha256"] = sha256_file(tmp / a["file"])
    for entry in models.values():
        if "onnx" in entry:
            entry["onnx"]["sha256"] = sha256_file(tmp / entry["onnx"]["file"])

    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": opts.name or f"{cfg.domain}-{opts.precision}",
        "domain": cfg.domain,
        "precision": opts.precision,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "preprocessing": {
            "size": cfg.image.size,
            "channels": cfg.image.channels,
            "color_mode": "RGB" if cfg.image.channels == 3 else "L",
            "resize": "bilinear",
            "scale": 1 / 255,
            "layout": "NHWC",
            "dtype": "float32",
        },
        "models": models,
        "assets": assets,
    }
    if cfg.captioner:
        vocab = Vocabulary(cfg.captioner.vocab)
        doc["captioner"] = {
            "attention": cfg.captioner.attention,
            "grid": cfg.grid,
            "max_len": cfg.captioner.max_len,
            "beam_width": cfg.captioner.beam_width,
            "start_id": vocab.start_id,
            "end_id": vocab.end_id,
            "token_input": "one-hot",
        }
    if cfg.segmenter:
        doc["segmenter"] = {"class_names": cfg.segmenter.class_names}
    if cfg.vae:
        doc["vae"] = {"latent_dim": cfg.vae.latent_dim, "anomaly_pool": cfg.vae.anomaly_pool}
    (tmp / BUNDLE_FILE).write_text(json.dumps(doc, indent=1) + "\n")

    log.info("measuring faithfulness on %d held-out images", len(held_out))
    device = device_task_metrics(
        BundleModels(load_bundle(tmp), threads=opts.threads), held_out, cfg.domain
    )
    reference = _reference_metrics(Path(opts.models), cfg, held_out)
    lost = drops(reference, device)
    failing = {k: v for k, v in lost.items() if v > MAX_DROP_POINTS}
    doc["faithfulness"] = {
        "held_out": {
            "images": len(held_out),
            "source": str(opts.eval_data or f"generated, seed {EVAL_SEED}"),
        },
        "reference": "Keras float32 models on the same images",
        "keras": reference,
        "device": device,
        "drop_points": lost,
        "max_drop_points": MAX_DROP_POINTS,
        "accepted_drop": bool(failing) and opts.accept_drop,
    }
    (tmp / BUNDLE_FILE).write_text(json.dumps(doc, indent=1) + "\n")
    if failing and not opts.accept_drop:
        worst = ", ".join(f"{k} -{v:.2f}" for k, v in failing.items())
        raise ConversionError(
            f"{opts.precision}: metrics drop more than {MAX_DROP_POINTS} point below float32 "
            f"({worst} points); no bundle written. Pass --accept-drop to keep it anyway."
        )
    return doc

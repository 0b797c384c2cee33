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

from converter.export import PRECISIONS, Feed, Graph, Published, iter_feeds, to_tflite
from converter.exports import EXPORTS, Export
from converter.faithfulness import drops, tensor_errors
from converter.gpu import check_model
from converter.tflite_model import tensor_types
from edge.analysis.bundle import BUNDLE_FILE, FORMAT_VERSION, BundleDoc, load_bundle, sha256_file
from edge.analysis.models import BundleModels
from edge.analysis.runtime import ModelRunner
from models.config import ModelsConfig
from models.data.dataset import Dataset, load_dataset, write_dataset
from models.data.domains import DOMAINS

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
    if graph.int8_as and precision == "int8":
        return f"{graph.int8_as} (kept float in int8 bundles)"
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


def _tensor(d: dict[str, Any], name: str) -> dict[str, Any]:
    """A tensor of a TFLite model as the bundle describes it."""
    q = d.get("quantization_parameters", {})
    return {
        "name": name,
        "tflite_name": str(d["name"]),
        "shape": [int(s) for s in d["shape"]],
        "dtype": np.dtype(d["dtype"]).name,
        "quantization": {
            "scale": np.asarray(q.get("scales", [])).tolist(),
            "zero_point": np.asarray(q.get("zero_points", [])).tolist(),
        },
    }


def _io(runner: ModelRunner, graph: Graph) -> dict[str, list[dict[str, Any]]]:
    sig = runner.interpreter.get_signature_runner()
    names = {f"output_{i}": n for i, n in enumerate(graph.outputs)}
    outputs = [
        {**_tensor(d, names.get(key, key)), "tflite_name": key}
        for key, d in sig.get_output_details().items()
    ]
    inputs = [{**_tensor(d, key), "tflite_name": key} for key, d in sig.get_input_details().items()]
    order = {n: i for i, n in enumerate(graph.outputs)}
    order_in = {n: i for i, n in enumerate(graph.inputs)}
    return {
        "inputs": sorted(inputs, key=lambda d: order_in[d["name"]]),
        "outputs": sorted(outputs, key=lambda d: order[d["name"]]),
    }


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
    exports = [e for e in EXPORTS.values() if e.available(Path(opts.models), cfg)]
    if not exports:
        raise ConversionError(f"{opts.models}: no trained models (weights files) found")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    scratch = Path(tempfile.mkdtemp(prefix="s3e-convert-"))
    try:
        doc = _build(opts, cfg, exports, tmp, scratch)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return doc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _feeds(
    exports: list[Export],
    graphs: dict[str, dict[str, Graph]],
    images: Any,
    max_len: int,
    limit: int,
) -> dict[str, list[Feed]]:
    out: dict[str, list[Feed]] = {}
    for e in exports:
        out.update(e.feeds(graphs[e.key], images, max_len, limit))
    return out


def _build(
    opts: Options, cfg: ModelsConfig, exports: list[Export], tmp: Path, scratch: Path
) -> dict[str, Any]:
    folder = Path(opts.models)
    graphs = {e.key: {g.name: g for g in e.graphs(folder, cfg)} for e in exports}
    max_len = cfg.captioner.max_len if cfg.captioner else 1
    calib = _split(
        cfg, opts.calibration, CALIBRATION_SEED, opts.calibration_n, scratch, "calibration"
    )
    held_out = _split(cfg, opts.eval_data, EVAL_SEED, opts.eval_n, scratch, "held-out")
    calib_feeds = _feeds(exports, graphs, calib.images, max_len, opts.calibration_n * max_len)
    eval_feeds = _feeds(exports, graphs, held_out.images, max_len, 30)
    if opts.onnx:
        (tmp / "onnx").mkdir()
    every = [g for by_name in graphs.values() for g in by_name.values()]
    models: dict[str, Any] = {}
    bar = tqdm(every, desc=f"convert {opts.precision}", unit="model", disable=not opts.progress)
    for graph in bar:
        bar.set_postfix_str(graph.name)
        models[graph.name] = _model(
            opts, graph, tmp, calib_feeds[graph.name], eval_feeds[graph.name]
        )
    published = {e.key: e.published(folder, cfg) for e in exports}
    for pub in (p for ps in published.values() for p in ps):
        models[pub.name] = published_entry(pub, tmp, opts.threads)
    assets: dict[str, Any] = {}
    owned: dict[str, list[str]] = {}
    for e in exports:
        written = e.assets(folder, cfg, tmp)
        owned[e.key] = list(written)
        assets.update({k: {"file": f} for k, f in written.items()})
    shutil.copy(folder / "config.json", tmp / "models_config.json")
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
        "outputs": {
            e.key: {
                "models": [
                    *e.shared_models(folder),
                    *(n for n in graphs[e.key] if n not in e.query_models()),
                    *(p.name for p in published[e.key]),
                ],
                "query_models": e.query_models(),
                "assets": owned[e.key],
                "settings": e.settings(cfg),
            }
            for e in exports
        },
    }
    BundleDoc.model_validate(doc)  # the device's reader must take what we write
    (tmp / BUNDLE_FILE).write_text(json.dumps(doc, indent=1) + "\n")
    _faithfulness(opts, cfg, exports, doc, tmp, held_out)
    return doc


def _model(
    opts: Options, graph: Graph, tmp: Path, calib: list[Feed], held_out: list[Feed]
) -> dict[str, Any]:
    log.info("%s: exporting to TFLite (%s)", graph.name, opts.precision)
    data = to_tflite(graph, opts.precision, iter_feeds(calib))
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
        "error_vs_keras": tensor_errors(graph, runner, held_out),
    }
    if not gpu.delegable:
        ops = sorted({p.op for p in gpu.fallback})
        log.warning(
            "%s: %d op(s) would fall back to the CPU on the GPU delegate: %s",
            graph.name,
            len(gpu.fallback),
            ops,
        )
    if opts.onnx:
        from converter.onnx_export import export_onnx

        onnx_path = tmp / "onnx" / f"{graph.name}.onnx"
        entry["onnx"] = {
            "file": f"onnx/{onnx_path.name}",
            **export_onnx(graph, onnx_path, held_out[:10]),
        }
    return entry


def published_entry(pub: Published, tmp: Path, threads: int) -> dict[str, Any]:
    """The bundle entry of a published model, copied as it is."""
    log.info("%s: published TFLite model, copied as it is", pub.name)
    path = tmp / f"{pub.name}.tflite"
    shutil.copy(pub.path, path)
    data = path.read_bytes()
    interpreter = ModelRunner(path, pub.outputs, threads).interpreter
    outputs = interpreter.get_output_details()
    if len(outputs) != len(pub.outputs):
        raise ConversionError(
            f"{pub.path}: {len(outputs)} outputs, but the export names {len(pub.outputs)}"
        )
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "float_io": True,
        "scheme": "published (as its maker ships it)",
        "tensor_types": tensor_types(data),
        "inputs": [_tensor(d, d["name"]) for d in interpreter.get_input_details()],
        "outputs": [_tensor(d, n) for d, n in zip(outputs, pub.outputs, strict=True)],
        "gpu": check_model(data).to_dict(),
        "error_vs_keras": {},
    }


def _faithfulness(
    opts: Options,
    cfg: ModelsConfig,
    exports: list[Export],
    doc: dict[str, Any],
    tmp: Path,
    held_out: Dataset,
) -> None:
    """Keras and the device pipeline on the same held-out images; a drop of more than a point
    in a guarded metric fails the conversion (unless --accept-drop)."""
    log.info("measuring faithfulness on %d held-out images", len(held_out))
    bundle = load_bundle(tmp)
    models = BundleModels(bundle, threads=opts.threads)
    device = {e.key: e.device(bundle, models, held_out) for e in exports}
    reference = {e.key: e.reference(Path(opts.models), cfg, held_out) for e in exports}
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

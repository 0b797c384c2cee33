"""`s3e-convert`: trained models -> a verified TFLite model bundle for the device."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

from converter.export import PRECISIONS

log = logging.getLogger("s3e-convert")
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s3e-convert",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Convert a folder of trained S3E models (models/<domain>) into a model bundle: each "
            "network exported to TFLite at batch 1 (captioner as encoder + one decoder step), "
            "quantized to the chosen precision, checked op by op against the TFLite GPU "
            "delegate's rules, compared with Keras on a held-out split (tensor errors and task "
            "metrics), optionally exported to ONNX, and described with sha256 hashes in "
            "bundle.json. A precision that loses more than 1 point of a task metric against "
            "float32 fails unless --accept-drop is given. Nothing is left in --out on failure."
        ),
        epilog="example: s3e-convert --models models/chest --precision int8 "
        "--out models/bundles/chest-int8",
    )
    p.add_argument("--models", type=Path, required=True, help="folder with config.json and weights")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        required=True,
        help="float16 is the GPU delegate's preferred form; int8 is full-integer with float I/O",
    )
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument(
        "--calibration",
        type=Path,
        help="data folder for int8 calibration (default: a generated split, seed 3003)",
    )
    p.add_argument(
        "--eval-data",
        type=Path,
        help="held-out data folder for faithfulness (default: a generated split, seed 4004)",
    )
    p.add_argument("--calibration-n", type=int, default=100, help="calibration images")
    p.add_argument("--eval-n", type=int, default=200, help="held-out images")
    p.add_argument("--onnx", action="store_true", help="also export each model to ONNX (opset 17)")
    p.add_argument(
        "--accept-drop", action="store_true", help="keep a bundle whose metrics drop > 1 point"
    )
    p.add_argument("--name", help="bundle name (default: <domain>-<precision>)")
    p.add_argument(
        "--threads", type=int, default=2, help="interpreter threads for the measurements"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out bundle")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from converter.build import ConversionError, Options, convert
    from models.config import ConfigError

    given = {f.name: getattr(args, f.name) for f in fields(Options) if hasattr(args, f.name)}
    opts = Options(**given, progress=not args.quiet)
    try:
        doc = convert(opts)
    except (ConversionError, ConfigError, FileNotFoundError) as e:
        log.error("%s", e)
        return EXIT_FAILED
    for name, m in doc["models"].items():
        errs = ", ".join(f"{k} {v['max_abs']:.1e}" for k, v in m["error_vs_keras"].items())
        said = f"max|err| {errs}" if errs else m["scheme"]
        gpu = "GPU-ready" if m["gpu"]["delegable"] else f"{len(m['gpu']['fallback'])} op(s) on CPU"
        log.info("%-18s %8.1f KB  %s  %s", name, m["bytes"] / 1024, gpu, said)
    log.info(
        "faithfulness (points lost vs float32): %s", json.dumps(doc["faithfulness"]["drop_points"])
    )
    log.info("wrote %s", args.out)
    return 0


def main() -> None:
    sys.exit(run())

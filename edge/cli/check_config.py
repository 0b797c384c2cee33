"""`s3e-edge check-config`: the config validated and its bundle verified, without starting."""

from __future__ import annotations

import argparse
import json
import sys

from edge.analysis.bundle import load_bundle
from edge.cli.command import EXIT_CONFIG, Command
from edge.config import EdgeConfig


def run(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    try:
        bundle = load_bundle(cfg.model.bundle)
    except ValueError as e:
        print(f"model.bundle: {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"config ok; bundle {bundle.name} ({bundle.precision}) verified at {bundle.root}")
    if args.show:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    return 0


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", action="store_true", help="print the resolved config")


COMMAND = Command("check-config", "validate the config and verify the model bundle", run, arguments)

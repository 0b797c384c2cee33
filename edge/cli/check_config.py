"""`s3e-edge check-config`: the config validated and its bundles verified, without starting."""

from __future__ import annotations

import argparse
import json
import sys

from edge.analysis.bundle import load_bundle
from edge.cli.command import EXIT_CONFIG, Command
from edge.config import EdgeConfig


def run(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    said = []
    for key, ref, what in (
        ("bundle", cfg.model.bundle, "bundle"),
        ("catch_all", cfg.model.catch_all, "catch-all"),
    ):
        if not ref:
            continue
        try:
            bundle = load_bundle(ref)
        except ValueError as e:
            print(f"model.{key}: {e}", file=sys.stderr)
            return EXIT_CONFIG
        said.append(f"{what} {bundle.name} ({bundle.precision}) verified at {bundle.root}")
    print("config ok; " + "; ".join(said))
    if args.show:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    return 0


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", action="store_true", help="print the resolved config")


COMMAND = Command(
    "check-config", "validate the config and verify the model bundles", run, arguments
)

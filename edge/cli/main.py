"""`s3e-edge`: the registry of commands (one module each, `edge.cli.command.Command`) and the
entry point: run the daemon, check a config, rebuild the index, re-analyse, subscribe to a
device's events, print the OpenAPI and MQTT schemas."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.cli import check_config, reanalyze, reindex, run, schemas, subscribe
from edge.cli.command import EXIT_CONFIG, Command
from edge.config import ConfigError, load_config
from edge.logs import setup_logging

COMMANDS: tuple[Command, ...] = (
    run.COMMAND,
    check_config.COMMAND,
    reindex.COMMAND,
    reanalyze.COMMAND,
    schemas.OPENAPI,
    schemas.MQTT_SCHEMA,
)
"""Commands that read the daemon's config (`--config`); `subscribe` reads none."""


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help="TOML config file (default: built-in defaults: shipped chest-int8 bundle, ./inbox, "
        "./var/s3e, http://127.0.0.1:8080)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s3e-edge",
        description="S3E on-device daemon: watches for images, captions, segments and scores "
        "them with a TFLite model bundle, and serves local search over HTTP.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for cmd in COMMANDS:
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help)
        _config_arg(sp)
        cmd.arguments(sp)
    sp = sub.add_parser("subscribe", help=subscribe.HELP, description=subscribe.DESCRIPTION)
    subscribe.add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "subscribe":
        setup_logging("text", "info")
        return subscribe.run(args)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"config error:\n{e}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.log_format, cfg.log_level)
    (cmd,) = (c for c in COMMANDS if c.name == args.command)
    return cmd.run(cfg, args)


if __name__ == "__main__":
    sys.exit(main())

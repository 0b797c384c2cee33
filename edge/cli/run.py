"""`s3e-edge run`: the daemon, until SIGTERM or SIGINT. `--host`, `--port`, `--data-dir`,
`--inbox`, `--bundle` and `--catch-all` override the config file (or the defaults) without
one."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.analysis.swap import StartupError
from edge.cli.command import EXIT_CONFIG, EXIT_STARTUP, Command
from edge.config import EdgeConfig, FolderCaptureConfig, HttpConfig, ModelConfig
from edge.daemon import Daemon
from edge.search.index import IndexBusyError

log = logging.getLogger("s3e")
FLAGS = {
    "host": "http.host",
    "port": "http.port",
    "data_dir": "data_dir",
    "inbox": "capture.folder.path",
    "bundle": "model.bundle",
    "catch_all": "model.catch_all",
}
"""Each flag and the config key it overrides."""


def arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("overrides of the config file (or of the defaults)")
    g.add_argument("--host", help="the address to serve on (http.host)")
    g.add_argument("--port", type=int, help="the port to serve on; 0: any free one (http.port)")
    g.add_argument("--data-dir", type=Path, help="records, originals and indexes (data_dir)")
    g.add_argument("--inbox", type=Path, help="the folder watched for images (capture.folder.path)")
    g.add_argument(
        "--bundle",
        help="the model bundle: a shipped one (chest-int8, photos-int8, ...) or a bundle folder "
        "(model.bundle)",
    )
    g.add_argument(
        "--catch-all",
        metavar="BUNDLE",
        help="a bundle for the images --bundle finds out of its domain: photos-int8 beside "
        "chest-int8 sends radiographs to chest and every other photograph to photos "
        "(model.catch_all)",
    )


def overridden(cfg: EdgeConfig, args: argparse.Namespace) -> EdgeConfig:
    """The config with the flags given applied and validated; ValueError names the flag."""
    given = {k: getattr(args, k, None) for k in FLAGS}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return cfg
    http: dict[str, Any] = {k: given[k] for k in ("host", "port") if k in given}
    folder = {"path": given["inbox"]} if "inbox" in given else {}
    model: dict[str, Any] = {k: given[k] for k in ("bundle", "catch_all") if k in given}
    try:
        update: dict[str, Any] = {
            "http": _section(HttpConfig, cfg.http, http),
            "model": _section(ModelConfig, cfg.model, model),
            "capture": cfg.capture.model_copy(
                update={"folder": _section(FolderCaptureConfig, cfg.capture.folder, folder)}
            ),
        }
        if "data_dir" in given:
            update["data_dir"] = EdgeConfig.model_validate({"data_dir": given["data_dir"]}).data_dir
    except ValidationError as e:
        err = e.errors()[0]
        name = next(k for k, key in FLAGS.items() if key.endswith(str(err["loc"][-1])))
        raise ValueError(f"--{name.replace('_', '-')}: {err['msg']} ({FLAGS[name]})") from None
    return cfg.model_copy(update=update)


def _section(model: Any, current: Any, changes: dict[str, Any]) -> Any:
    return model.model_validate({**current.model_dump(), **changes}) if changes else current


def run(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    try:
        cfg = overridden(cfg, args)
    except ValueError as e:
        print(f"config error:\n{e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        daemon = Daemon(cfg)
    except (StartupError, IndexBusyError) as e:
        log.error("cannot start: %s", e)
        return EXIT_STARTUP
    try:
        return daemon.run()
    except StartupError as e:
        log.error("cannot start: %s", e)
        daemon.stop()
        return EXIT_STARTUP


COMMAND = Command("run", "run the daemon until SIGTERM/SIGINT", run, arguments)

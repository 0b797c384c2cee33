"""`s3e-edge run`: the daemon, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging

from edge.analysis.swap import StartupError
from edge.cli.command import EXIT_STARTUP, Command
from edge.config import EdgeConfig
from edge.daemon import Daemon
from edge.search.index import IndexBusyError

log = logging.getLogger("s3e")


def run(cfg: EdgeConfig, args: argparse.Namespace) -> int:
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


COMMAND = Command("run", "run the daemon until SIGTERM/SIGINT", run)

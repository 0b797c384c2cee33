"""The shape of an `s3e-edge` command: one module each, registered in `edge.cli.main`.

Exit codes: 0 done, 2 bad config or arguments, 3 could not start (bundle, port, index lock,
accelerator).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from edge.config import EdgeConfig

EXIT_CONFIG, EXIT_STARTUP = 2, 3


def no_arguments(p: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[EdgeConfig, argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = no_arguments
    description: str = ""

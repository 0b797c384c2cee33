"""Shared fixtures: small generated data sets, written once per session."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shapes_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.data.dataset import write_dataset

    return write_dataset("shapes", 96, 7, tmp_path_factory.mktemp("data") / "shapes")


@pytest.fixture(scope="session")
def chest_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.data.dataset import write_dataset

    return write_dataset("chest", 96, 7, tmp_path_factory.mktemp("data") / "chest")


@pytest.fixture(scope="session")
def asset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' registry files go (`s3e-train assets`): `$S3E_ASSETS` when a developer
    keeps one, else a folder of this run, filled once for every test that needs it."""
    kept = os.environ.get("S3E_ASSETS")
    return Path(kept) if kept else tmp_path_factory.mktemp("assets")


@pytest.fixture
def edge_config(tmp_path: Path) -> Callable[..., Any]:
    """A factory of daemon configs rooted in tmp_path: fast polling, port 0, no GPU probe."""
    from edge.config import parse_config

    def make(**overrides: Any) -> Any:
        data: dict[str, Any] = {
            "device_id": "test-edge",
            "data_dir": str(tmp_path / "data"),
            "model": {
                "bundle": "chest-int8",
                "catch_all": "",
                "accelerator": "cpu",
                "threads": 1,
                "workers": 1,
            },
            "capture": {
                "folder": {"path": str(tmp_path / "inbox"), "settle_s": 0.1, "poll_interval_s": 0.2}
            },
            "index": {"commit_every": 8, "commit_interval_s": 0.2},
            "http": {"port": 0},
        }
        for key, value in overrides.items():
            section, _, field = key.partition("__")
            if field:
                node = data.setdefault(section, {})
                *path, last = field.split("__")
                for p in path:
                    node = node.setdefault(p, {})
                node[last] = value
            else:
                data[section] = value
        return parse_config(data, "test")

    return make


@pytest.fixture
def daemon_factory() -> Iterator[Callable[..., Any]]:
    """Start in-process daemons (without signal handlers); all are stopped at teardown."""
    from edge.daemon import Daemon

    started: list[Daemon] = []

    def start(cfg: Any) -> Daemon:
        d = Daemon(cfg)
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        if not d.stopping.is_set():
            d.stop()


@pytest.fixture(scope="session")
def chest_images(chest_small: Path) -> dict[str, Any]:
    """The generated chest images with their ground-truth findings, by file name."""
    meta = json.loads((chest_small / "meta.json").read_text())
    return {"root": chest_small / "images", "meta": meta}


# The S3 servers' fixtures (Swift, moto, the fault proxy), for every test module.
from support.s3_servers import fault_proxy, moto_server, swift  # noqa: E402, F401

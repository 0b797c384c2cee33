"""Shared fixtures: small generated data sets, written once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shapes_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.data.dataset import write_dataset

    return write_dataset("shapes", 96, 7, tmp_path_factory.mktemp("data") / "shapes")


@pytest.fixture(scope="session")
def chest_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.data.dataset import write_dataset

    return write_dataset("chest", 96, 7, tmp_path_factory.mktemp("data") / "chest")

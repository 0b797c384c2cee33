"""The device side needs no TensorFlow: a fresh venv with only the package's own dependencies
(no extras) starts the daemon and indexes an image."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.common import ROOT, free_port, wait_until
from support.processes import healthy, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    r = subprocess.run([*pip, str(ROOT)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "BuildBackendWarning" not in r.stderr, "the package's metadata draws setuptools' notes"
    return venv


def test_no_tensorflow_in_the_device_install(device_venv: Path):
    py = str(device_venv / "bin" / "python")
    r = subprocess.run([py, "-c", "import tensorflow"], capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'tensorflow'" in r.stderr
    r = subprocess.run(
        [
            py,
            "-c",
            "import sys, edge.daemon, edge.cli.main, edge.analysis.models; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_keras')))",
        ],
        capture_output=True,
        text=True,
        cwd=device_venv,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_make_runs_demo_generator_needs_no_tensorflow(device_venv: Path, tmp_path: Path):
    exe = str(device_venv / "bin" / "s3e-train")
    r = subprocess.run(
        [
            exe,
            "make-data",
            "--domain",
            "chest",
            "--n",
            "3",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "demo" / "images").glob("*.png"))) == 3


def test_daemon_runs_and_indexes_an_image_without_tensorflow(
    device_venv: Path, tmp_path: Path, chest_images: dict[str, Any]
):
    port = free_port()
    (tmp_path / "inbox").mkdir()
    config = write_config(tmp_path, port)
    image = sorted(chest_images["root"].glob("*.png"))[0]
    shutil.copy(image, tmp_path / "inbox" / image.name)
    exe = str(device_venv / "bin" / "s3e-edge")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(tmp_path / "log.txt", "wb") as log:
        proc = subprocess.Popen(
            [exe, "run", "--config", str(config)],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_until(lambda: healthy(port), 90, "daemon up")
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/search").json()["total"] == 1, 60, "indexed"
        )
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0
    assert health["runtime"] == "ai_edge_litert" and health["bundle"]["name"] == "chest-int8"

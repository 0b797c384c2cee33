"""`s3e-edge` as a user runs it: a separate process, signals, kill -9, systemd's notify socket,
the config errors and the other commands."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.common import ROOT, free_port, wait_until
from support.processes import EDGE, INDEXED, children, db_count, healthy, start, write_config

from edge.analysis.runtime import gpu_devices


@pytest.fixture
def proc_env(tmp_path: Path, chest_images: dict[str, Any]) -> dict[str, Any]:
    port = free_port()
    (tmp_path / "inbox").mkdir()
    return {
        "tmp": tmp_path,
        "port": port,
        "config": write_config(tmp_path, port),
        "images": sorted(chest_images["root"].glob("*.png")),
    }


def start_mid_batch(proc_env: dict[str, Any], images: list[Path]) -> subprocess.Popen[bytes]:
    """A daemon with `images` dropped into its folder, returned once 5 are analysed."""
    tmp = proc_env["tmp"]
    proc = start(proc_env["config"], tmp / "log.txt")
    try:
        wait_until(lambda: healthy(proc_env["port"]), 60, "daemon up")
        for p in images:
            shutil.copy(p, tmp / "inbox" / p.name)
        wait_until(lambda: db_count(tmp / "data", "status='analysed'") >= 5, 60, "5 analysed")
    except BaseException:
        proc.kill()
        raise
    return proc


def test_sigterm_mid_batch_exits_0_promptly_and_a_restart_finishes_the_rest(
    proc_env: dict[str, Any],
):
    tmp, images = proc_env["tmp"], proc_env["images"][:60]
    proc = start_mid_batch(proc_env, images)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    rc = proc.wait(60)
    assert rc == 0
    assert time.monotonic() - t0 < 20
    log = (tmp / "log.txt").read_text()
    assert "SIGTERM: stopping" in log and log.rstrip().endswith("stopped")
    assert db_count(tmp / "data", "status='failed'") == 0
    # what was analysed before the stop is searchable: the last commit happened
    analysed = db_count(tmp / "data", "status='analysed'")
    assert db_count(tmp / "data", INDEXED) == analysed
    proc = start(proc_env["config"], tmp / "log.txt")
    try:
        wait_until(
            lambda: db_count(tmp / "data", INDEXED) == len(images),
            120,
            "all indexed after the restart",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert list((tmp / "inbox").iterdir()) == []


def test_kill_9_mid_batch_then_restart_resumes_and_loses_nothing(proc_env: dict[str, Any]):
    """Killed while images are being analysed: at restart every accepted image is analysed and
    indexed, exactly once."""
    tmp, images = proc_env["tmp"], proc_env["images"][:60]
    proc = start_mid_batch(proc_env, images)
    try:
        workers = children(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
    port = proc_env["port"]
    assert workers, "the analysis worker process was not found"
    wait_until(
        lambda: not any(Path(f"/proc/{w}").exists() for w in workers),
        10,
        "the orphaned analysis process to exit",
    )
    analysed = db_count(tmp / "data", "status='analysed'")
    accepted = db_count(tmp / "data", "1=1")
    assert analysed < len(images), "the kill came too late to test anything"
    proc = start(proc_env["config"], tmp / "log.txt")
    try:
        wait_until(lambda: db_count(tmp / "data", INDEXED) == len(images), 120, "all")
        body = httpx.get(f"http://127.0.0.1:{port}/search?limit=200", timeout=10).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert body["total"] == len(images)
    assert len({r["id"] for r in body["results"]}) == len(images)
    assert db_count(tmp / "data", "status='analysed'") == len(images)
    assert list((tmp / "inbox").iterdir()) == []
    print(f"killed with {accepted} accepted, {analysed} analysed of {len(images)}")


def test_systemd_notify_ready_and_stopping(proc_env: dict[str, Any]):
    tmp = proc_env["tmp"]
    sock_path = str(tmp / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(60)
        proc = start(
            proc_env["config"],
            tmp / "log.txt",
            {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"},
        )
        try:
            first = sock.recv(4096).decode()
            assert "READY=1" in first
            assert healthy(proc_env["port"])  # ready means serving
            assert sock.recv(4096).decode() == "WATCHDOG=1"
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
        msgs = []
        sock.settimeout(1)
        while True:
            try:
                msgs.append(sock.recv(4096).decode())
            except TimeoutError:
                break
    assert rc == 0 and "STOPPING=1" in msgs


def test_reindex_cli_refuses_while_the_daemon_holds_the_index_then_rebuilds(
    proc_env: dict[str, Any],
):
    tmp, port = proc_env["tmp"], proc_env["port"]
    for p in proc_env["images"][:3]:
        shutil.copy(p, tmp / "inbox" / p.name)
    proc = start(proc_env["config"], tmp / "log.txt")
    try:
        wait_until(lambda: db_count(tmp / "data", INDEXED) == 3, 60, "indexed")
        busy = subprocess.run(
            [*EDGE, "reindex", "--config", str(proc_env["config"])],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert busy.returncode == 3 and "daemon running" in busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    shutil.rmtree(tmp / "data" / "index")
    done = subprocess.run(
        [*EDGE, "reindex", "--config", str(proc_env["config"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "reindexed 3 records" in done.stdout
    proc = start(proc_env["config"], tmp / "log.txt")
    try:
        wait_until(lambda: healthy(port), 60, "daemon up")
        assert httpx.get(f"http://127.0.0.1:{port}/search").json()["total"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[model]\naccelerater = 'cpu'\n", "model.accelerater: unknown key"),
        ("[model]\naccelerator = 'tpu'\n", "model.accelerator: Input should be"),
        ("[http]\nport = 'eighty'\n", "http.port: Input should be a valid integer"),
        ("device_id = 'a b'\n", "device_id: String should match pattern"),
        ("[mqtt]\nhost = 'broker'\nqos = 3\n", "mqtt.qos: Input should be 0, 1 or 2"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path: Path, toml: str, message: str):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    r = subprocess.run(
        [*EDGE, "check-config", "--config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert str(path) in r.stderr and message in r.stderr


def test_check_config_verifies_the_bundle_and_defaults_need_no_file(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [*EDGE, "check-config", "--show"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "bundle chest-int8 (int8) verified" in r.stdout
    assert "catch-all photos-int8 (int8) verified" in r.stdout
    assert '"path": "inbox"' in r.stdout and '"port": 8080' in r.stdout


def test_a_missing_bundle_or_a_busy_port_is_a_startup_failure(proc_env: dict[str, Any]):
    tmp = proc_env["tmp"]
    cfg = write_config(tmp, proc_env["port"])
    cfg.write_text(cfg.read_text().replace("[model]\n", "[model]\nbundle = 'nope-int8'\n", 1))
    r = subprocess.run(
        [*EDGE, "run", "--config", str(cfg)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 3 and "nope-int8" in r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = write_config(tmp, s.getsockname()[1])
        r = subprocess.run(
            [*EDGE, "run", "--config", str(busy)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 3 and "http.port" in r.stderr and "--port" in r.stderr


def test_flags_override_the_defaults_without_a_config_file(
    tmp_path: Path, chest_images: dict[str, Any]
) -> None:
    port, data, inbox = free_port(), tmp_path / "elsewhere", tmp_path / "drop"
    inbox.mkdir()
    shutil.copy(sorted(chest_images["root"].glob("*.png"))[0], inbox / "one.png")
    flags = [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--inbox",
        str(inbox),
        "--bundle",
        "photos-int8",
    ]
    proc = subprocess.Popen(
        [*EDGE, "run", *flags], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        wait_until(lambda: healthy(port), 60, "serving on the --port given")
        wait_until(lambda: db_count(data, "status='analysed'") == 1, 60, "the --inbox image")
        assert db_count(data, "bundle LIKE 'photos-int8%'") == 1, "analysed by the --bundle"
        assert not (tmp_path / "var").exists() and not (tmp_path / "inbox").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    r = subprocess.run(
        [*EDGE, "run", "--port", "70000"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "--port" in r.stderr and "http.port" in r.stderr


def test_a_first_run_prints_only_the_daemons_own_lines(tmp_path: Path) -> None:
    """On a machine without a GPU: no GPU warning, nothing a native library prints (LiteRT's
    accelerator registry, TFLite's delegate line), no warning at all; each line is the daemon's
    log format."""
    port = free_port()
    log = tmp_path / "out.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*EDGE, "run", "--port", str(port)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        wait_until(lambda: healthy(port), 60, "serving")
        (tmp_path / "inbox" / "one.png").write_bytes(_tiny_png())
        wait_until(lambda: db_count(tmp_path / "var" / "s3e", "status!='pending'") == 1, 60, "one")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    stray = [ln for ln in lines if not re.match(r"^\d\d:\d\d:\d\d (INFO|WARNING|ERROR) ", ln)]
    assert lines and not stray, stray
    if not gpu_devices():
        assert not [ln for ln in lines if " WARNING " in ln], lines


def _tiny_png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(buf, "PNG")
    return buf.getvalue()

"""The systemd unit: hardened, Type=notify, runs check-config first; verified by systemd where
`systemd-analyze` exists."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.common import ROOT

UNIT = ROOT / "systemd" / "s3e-edge.service"


def parse(path: Path) -> configparser.RawConfigParser:
    cp = configparser.RawConfigParser(strict=False, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def test_unit_is_hardened_notify_and_checks_its_config_first():
    svc = parse(UNIT)["Service"]
    assert svc["Type"] == "notify" and int(svc["WatchdogSec"]) > 0
    assert "check-config" in svc["ExecStartPre"] and " run " in svc["ExecStart"]
    assert svc["Restart"] == "on-failure"
    assert svc["DynamicUser"] == "yes" and svc["StateDirectory"] == "s3e"
    assert svc["ProtectSystem"] == "strict" and svc["NoNewPrivileges"] == "yes"
    assert svc["CapabilityBoundingSet"] == ""
    assert svc["PrivateDevices"] == "yes" and svc["ProcSubset"] == "pid"
    assert svc["UMask"] == "0077" and svc["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert svc["MemoryMax"] and int(svc["TasksMax"]) > 0 and int(svc["LimitNOFILE"]) >= 4096
    assert parse(UNIT)["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_security_exposure_is_at_most_1_5():
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert found, r.stdout + r.stderr
    assert float(found.group(1)) <= 1.5, r.stdout
    for line in (
        "SystemCallFilter=~@privileged",
        "SystemCallFilter=~@resources",
        "PrivateDevices=",
        "ProcSubset=",
        "UMask=",
    ):
        assert not any(row.startswith("✗ " + line) for row in r.stdout.splitlines()), line


def test_example_config_is_valid():
    from edge.config import load_config

    cfg = load_config(ROOT / "systemd" / "edge.toml")
    assert str(cfg.data_dir) == "data" and cfg.model.bundle == "chest-int8"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_the_unit_and_would_catch_a_bad_one(tmp_path: Path):
    exe = Path(sys.executable).parent / "s3e-edge"
    if not exe.exists():
        pytest.skip("s3e-edge is not installed in this environment")
    text = UNIT.read_text().replace("/opt/s3e/venv/bin/s3e-edge", str(exe))
    good = tmp_path / "s3e-edge.service"
    good.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "s3e-bad.service"
    bad.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    r = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True)
    assert "bogus" in r.stderr and "protect system" in r.stderr.lower()

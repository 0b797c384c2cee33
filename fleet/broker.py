"""Broker credentials that make a device's topics its own: `s3e-fleet device add NAME`.

Each device logs in to mosquitto as its `device_id`, and mosquitto's ACL patterns substitute
the user name (`%u`), so a device publishes under `<prefix>/<its name>/` only and reads only
its own commands; the fleet's user reads every device's events (mosquitto 2.0 checks a shared
subscription `$share/<group>/<filter>` against `<filter>`, and each delivered message against
the subscriber's read rights). The fleet then takes the topic's device as the event's device
(`fleet.ingest`).

The password file is written by `mosquitto_passwd -b` (a new password each time: running the
command again rotates it); the ACL file gets the lines it lacks, and nothing twice. Mosquitto
reads both again on SIGHUP.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from fleet.trust import device_name_ok

GLOBAL = ""
"""The ACL file's part before any `user` line: `pattern` lines, which apply to every user."""
NEW_FILE = "# S3E devices write and read only under their own name (s3e-fleet device add)"


def device_patterns(prefix: str, homeassistant_prefix: str = "") -> list[str]:
    """The `pattern` lines that give each device its own topics: it writes status, events,
    alerts, stats and command results under its name, reads its own commands, and with
    Home Assistant discovery writes its own sensors' configs."""
    p = prefix.rstrip("/")
    lines = [f"pattern write {p}/%u/#", f"pattern read {p}/%u/cmd/#"]
    if homeassistant_prefix:
        lines.append(f"pattern write {homeassistant_prefix.rstrip('/')}/sensor/s3e_%u/+/config")
    return lines


def fleet_lines(prefix: str) -> list[str]:
    """The fleet's user: every device's events, which it reads on a shared subscription."""
    return [f"topic read {prefix.rstrip('/')}/+/events"]


def ensure_acl(path: Path, wanted: dict[str, list[str]]) -> list[str]:
    """Add to the ACL file the lines it lacks: `wanted` maps a user (`GLOBAL`: before any
    `user` line) to its lines. Other lines, comments and order stay. Returns the lines added."""
    head = [] if path.exists() else [NEW_FILE]
    blocks: list[tuple[str, list[str]]] = []
    for line in path.read_text().splitlines() if path.exists() else []:
        words = line.split()
        if words[:1] == ["user"] and len(words) == 2:
            blocks.append((words[1], [line]))
        else:
            (blocks[-1][1] if blocks else head).append(line)
    added = []
    for who, want in wanted.items():
        mine = [head] if who == GLOBAL else [ls for u, ls in blocks if u == who]
        have = {" ".join(ln.split()) for ls in mine for ln in ls}
        missing = [w for w in want if " ".join(w.split()) not in have]
        if not missing:
            continue
        added += missing
        if mine:
            _append(mine[-1], missing)
        else:
            blocks.append((who, [f"user {who}", *missing]))
    if added:
        out = list(head)
        for _, block in blocks:
            out += [""] if out and out[-1].strip() else []
            out += block
        _write(path, "\n".join(out).strip("\n") + "\n", 0o600)
    return added


def _append(block: list[str], lines: list[str]) -> None:
    """After the block's last line that is not blank."""
    at = len(block)
    while at and not block[at - 1].strip():
        at -= 1
    block[at:at] = lines


def set_password(password_file: Path, user: str, password: str) -> None:
    """`mosquitto_passwd -b`: the user's entry, hashed; the file is made (owner only) first."""
    if shutil.which("mosquitto_passwd") is None:
        raise RuntimeError("mosquitto_passwd is not installed (apt-get install mosquitto)")
    if not password_file.exists():
        _write(password_file, "", 0o600)
    done = subprocess.run(
        ["mosquitto_passwd", "-b", str(password_file), user, password],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mosquitto_passwd: {(done.stderr or done.stdout).strip()}")


def add_user(
    name: str,
    password_file: Path,
    acl_file: Path,
    acl: dict[str, list[str]],
    secret_file: Path | None = None,
) -> str:
    """A user with a new password and its ACL lines; the password is returned, and written
    to `secret_file` (owner only) when given."""
    password = secrets.token_urlsafe(24)
    set_password(password_file, name, password)
    ensure_acl(acl_file, acl)
    if secret_file is not None:
        _write(secret_file, password + "\n", 0o600)
    return password


def add_device(
    name: str,
    password_file: Path,
    acl_file: Path,
    prefix: str,
    fleet_user: str,
    homeassistant_prefix: str = "",
    secret_file: Path | None = None,
) -> str:
    """A device's broker user (its `device_id`): the patterns of every device's topics, and
    the fleet's user, are added to the ACL file if it lacks them."""
    if not device_name_ok(name):
        raise ValueError(f"not a device_id: {name!r} (letters, digits, '_', '.', '-')")
    if name == fleet_user:
        raise ValueError(f"{name!r} is the fleet's own broker user: give the device another name")
    acl = {GLOBAL: device_patterns(prefix, homeassistant_prefix), fleet_user: fleet_lines(prefix)}
    return add_user(name, password_file, acl_file, acl, secret_file)


def add_fleet(
    fleet_user: str,
    password_file: Path,
    acl_file: Path,
    prefix: str,
    secret_file: Path | None = None,
) -> str:
    """The fleet's own broker user (`mqtt.username`), reading every device's events."""
    if not device_name_ok(fleet_user):
        raise ValueError(f"not a user name for the fleet: {fleet_user!r}")
    return add_user(
        fleet_user, password_file, acl_file, {fleet_user: fleet_lines(prefix)}, secret_file
    )


def _write(path: Path, text: str, mode: int) -> None:
    """Replace a file at once, keeping its mode (or `mode` for a new one)."""
    keep = path.stat().st_mode & 0o777 if path.exists() else mode
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, keep)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, keep)
    tmp.replace(path)

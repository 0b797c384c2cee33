"""systemd's notify protocol (`Type=notify`): readiness, status, watchdog pings and stopping,
sent as datagrams to `NOTIFY_SOCKET`. A no-op when not run by systemd."""

from __future__ import annotations

import os
import socket


def notify(*states: str, env: dict[str, str] | None = None) -> bool:
    """Send e.g. notify("READY=1", "STATUS=...") ; False when there is no socket."""
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall("\n".join(states).encode())
    except OSError:
        return False
    return True


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of WatchdogSec), or None if none is wanted."""
    e = env if env is not None else os.environ
    usec = e.get("WATCHDOG_USEC", "")
    pid = e.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6

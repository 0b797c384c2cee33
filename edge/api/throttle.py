"""Wrong tokens cost time: each client address may send a few wrong tokens, then waits before
its next try, the wait doubling with every further wrong one up to a bound.

A client is an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64, so walking
through its addresses buys nothing). While a client waits, its tokens are not even compared:
a right token then gets the same 429 as a wrong one, so waiting is the only way on, and a
guess costs its share of the wait. The wait always ends, a right token clears the client's
count, and a client that stays quiet for twice the longest wait starts afresh, so the owner
of the token is never locked out for good. One line is logged when a client starts to wait,
not one per attempt. The clock is injected, so tests move time by hand.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

log = logging.getLogger("s3e.http")
FIRST_WAIT_S = 1.0
MAX_CLIENTS = 4096
"""Clients tracked at most; beyond it the one quiet longest is forgotten (bounded memory
under a flood from many addresses)."""


@dataclass
class _Client:
    failures: int = 0
    last_at: float = 0.0
    until: float = 0.0
    """Monotonic time before which this client's tokens are refused unseen."""


def client_key(scope: Scope) -> str:
    """Whom the throttle counts: the peer's IPv4 address, or its IPv6 /64."""
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class LoginThrottle:
    """Per-client counts of wrong tokens and the wait they earn.

    `free`: wrong tokens allowed before the first wait (`http.login_attempts`); the wait is
    then `FIRST_WAIT_S`, doubling with each further wrong token up to `max_wait_s`
    (`http.login_backoff_max_s`)."""

    def __init__(
        self,
        free: int = 5,
        max_wait_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.free = free
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """Seconds `client` must still wait before a token of its is compared (0: none)."""
        now = self.clock()
        with self._lock:
            entry = self._live(client, now)
            return max(0.0, entry.until - now) if entry is not None else 0.0

    def failed(self, client: str) -> float:
        """Count a wrong token; the wait it earns the client (0 while it has tries left)."""
        now = self.clock()
        with self._lock:
            entry = self._live(client, now)
            if entry is None:
                entry = _Client()
                while len(self._clients) >= self.max_clients:
                    self._clients.popitem(last=False)
                self._clients[client] = entry
            self._clients.move_to_end(client)
            entry.failures += 1
            entry.last_at = now
            over = entry.failures - self.free
            if over < 0:
                return 0.0
            wait = min(FIRST_WAIT_S * 2.0 ** min(over, 40), self.max_wait_s)
            entry.until = now + wait
        if over == 0:
            log.warning(
                "client %s sent %d wrong tokens: each further try waits first (from %.0f s, "
                "doubling up to %.0f s: http.login_backoff_max_s); logged once per burst",
                client,
                entry.failures,
                wait,
                self.max_wait_s,
            )
        return wait

    def succeeded(self, client: str) -> None:
        """A right token: the client's count starts again from nothing."""
        if self._clients:  # the common case, no failures anywhere, takes no lock
            with self._lock:
                self._clients.pop(client, None)

    def tracked(self) -> int:
        """How many clients have wrong tokens on record."""
        with self._lock:
            return len(self._clients)

    def _live(self, client: str, now: float) -> _Client | None:
        """The client's record, dropped once it has been quiet for twice the longest wait."""
        entry = self._clients.get(client)
        if entry is not None and now - max(entry.last_at, entry.until) > 2 * self.max_wait_s:
            del self._clients[client]
            return None
        return entry

"""Server-side sessions: what `POST /login` hands out instead of the token.

A session id is 32 random bytes (`secrets`), new at every login, so a cookie seen once says
nothing about the next one. The server keeps each live session with its expiry and the token
it was granted under: a session ends when it expires, when `/logout` revokes it, when the token
in force changes, or when the cap on live sessions makes room for a newer one (the oldest
goes). Only a hash of each id is kept, so the table holds nothing a client could present. The
clock is injected, so tests move time by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """Live sessions, oldest first; `binding` names the token a session was granted under
    (a fingerprint, never the token)."""

    def __init__(
        self,
        max_age_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._live: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, binding: str) -> str:
        """A new session's id; the oldest session ends when the cap is reached."""
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._drop_expired(now)
            while len(self._live) >= self.max_sessions:
                self._live.popitem(last=False)
            self._live[_key(sid)] = (now + self.max_age_s, binding)
        return sid

    def left(self, sid: str, binding: str) -> float | None:
        """Seconds the session has left; None when it is unknown, expired or was granted under
        another token."""
        if not sid:
            return None
        key = _key(sid)
        now = self.clock()
        with self._lock:
            got = self._live.get(key)
            if got is None:
                return None
            expires, bound = got
            if expires <= now or not hmac.compare_digest(bound, binding):
                del self._live[key]
                return None
            return expires - now

    def revoke(self, sid: str) -> bool:
        """End one session; whether it was live."""
        with self._lock:
            return self._live.pop(_key(sid), None) is not None

    def revoke_all(self) -> int:
        """End every session (the token changed); how many there were."""
        with self._lock:
            n = len(self._live)
            self._live.clear()
            return n

    def count(self) -> int:
        """Live sessions now."""
        with self._lock:
            self._drop_expired(self.clock())
            return len(self._live)

    def _drop_expired(self, now: float) -> None:
        """Sessions expire in the order they began: drop from the front."""
        while self._live:
            key, (expires, _) = next(iter(self._live.items()))
            if expires > now:
                return
            del self._live[key]

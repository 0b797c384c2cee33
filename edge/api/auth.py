"""Who is signed in: the token in force, the sessions granted under it, and the throttle on
wrong tokens, in one object that an app's `Guard` and its session routes share.

Any FastAPI app built on an `HttpConfig` (the device's, the fleet's) builds one `Auth` and
hands it to both: `app.add_middleware(Guard, cfg=cfg, auth=auth)` and
`app.include_router(session_router(auth))` (`edge.api.session`). The guard decides each
request once and leaves the verdict on the request, where routes read it (`may_read`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request, Response

from edge.api.session_store import SessionStore
from edge.api.throttle import LoginThrottle, client_key
from edge.config import HttpConfig

SESSION_COOKIE = "s3e_session"
_STATE_KEY = "s3e_auth"


class TokenFileError(RuntimeError):
    """`http.token_file` cannot be used; the message names the key and the file."""


class Verdict(enum.Enum):
    OPEN = "open"
    """No token is configured: every route is open."""
    SIGNED_IN = "signed_in"
    """The right bearer token, or a live session cookie."""
    MISSING = "missing"
    """Neither a bearer token nor a live session."""
    WRONG = "wrong"
    """A wrong bearer token (counted by the throttle)."""
    THROTTLED = "throttled"
    """A bearer token from a client that must wait first (not compared)."""


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    retry_after_s: float = 0.0
    """With THROTTLED: how long the client must still wait."""
    session_left_s: float | None = None
    """Signed in by a session: the seconds it has left."""

    @property
    def may_read(self) -> bool:
        return self.verdict in (Verdict.OPEN, Verdict.SIGNED_IN)


def too_many_wrong(wait_s: float) -> tuple[str, dict[str, str]]:
    """The 429's detail and headers for a client that must wait `wait_s` more seconds."""
    seconds = max(1, math.ceil(wait_s))
    return (
        f"too many wrong tokens from this address: try again in {seconds} s "
        "(http.login_attempts, http.login_backoff_max_s)",
        {"Retry-After": str(seconds)},
    )


def read_token(cfg: HttpConfig) -> str:
    """The token in force: `http.token`, or the content of `http.token_file` (stripped)."""
    if not cfg.token_file:
        return cfg.token.get_secret_value()
    try:
        token = Path(cfg.token_file).read_text().strip()
    except OSError as e:
        raise TokenFileError(f"http.token_file {cfg.token_file}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise TokenFileError(f"http.token_file {cfg.token_file}: not UTF-8 text") from None
    if not token:
        raise TokenFileError(f"http.token_file {cfg.token_file} is empty")
    return token


def beyond_loopback(host: str) -> bool:
    """Whether listening on `host` reaches past this machine (any name but localhost)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return False
    try:
        return not ipaddress.ip_address(name).is_loopback
    except ValueError:
        return True


def exposure_warning(
    cfg: HttpConfig, token_required: bool, reach: str = "search, upload and switch bundles"
) -> str | None:
    """The line to log when the server listens on a network with no token; `reach` says what
    anyone who reaches the port can then do."""
    if token_required or not beyond_loopback(cfg.host):
        return None
    return (
        f"http.host = {cfg.host!r} listens beyond loopback and http.token is empty: whoever "
        f"reaches the port can {reach}; set http.token (or http.token_file), or keep "
        "http.host on 127.0.0.1"
    )


class Auth:
    """The token in force, its sessions and the throttle, for one app."""

    def __init__(
        self, cfg: HttpConfig, clock: Callable[[], float] = time.monotonic, token: str | None = None
    ) -> None:
        """`token`: the token in force, when not the config's (read from `http.token` or
        `http.token_file` otherwise, raising TokenFileError)."""
        self.cfg = cfg
        self.sessions = SessionStore(cfg.session_max_age_s, cfg.max_sessions, clock)
        self.throttle = LoginThrottle(cfg.login_attempts, cfg.login_backoff_max_s, clock)
        self._token = ""
        self._binding = ""
        self.set_token(read_token(cfg) if token is None else token)

    @property
    def token_required(self) -> bool:
        return bool(self._token)

    def set_token(self, token: str) -> None:
        """Put another token in force: every session granted under the old one ends."""
        if hmac.compare_digest(token.encode(), self._token.encode()):
            return
        self._token = token
        self._binding = hmac.new(token.encode(), b"s3e-session-binding", hashlib.sha256).hexdigest()
        self.sessions.revoke_all()

    def try_token(self, client: str, given: str) -> Check:
        """A token a client offers: while the client must wait, refused without being
        compared; else signed in, or wrong and counted against the client."""
        wait = self.throttle.wait(client)
        if wait > 0:
            return Check(Verdict.THROTTLED, retry_after_s=wait)
        if self._token and hmac.compare_digest(given.encode(), self._token.encode()):
            self.throttle.succeeded(client)
            return Check(Verdict.SIGNED_IN)
        self.throttle.failed(client)
        return Check(Verdict.WRONG)

    def check(self, request: Request) -> Check:
        """The request's verdict; a wrong bearer token counts against its client."""
        if not self._token:
            return Check(Verdict.OPEN)
        header = request.headers.get("authorization")
        if header is not None:
            given = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
            return self.try_token(client_key(request.scope), given)
        left = self.sessions.left(request.cookies.get(SESSION_COOKIE, ""), self._binding)
        if left is not None:
            return Check(Verdict.SIGNED_IN, session_left_s=left)
        return Check(Verdict.MISSING)

    def start_session(self, request: Request, response: Response) -> None:
        """A new session for a client that gave the right token; the one it held (if any)
        ends, so a session id never outlives a login."""
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            self.sessions.revoke(old)
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.create(self._binding),
            max_age=int(self.cfg.session_max_age_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )

    def end_session(self, request: Request, response: Response) -> None:
        self.sessions.revoke(request.cookies.get(SESSION_COOKIE, ""))
        response.delete_cookie(
            SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=self.secure(request)
        )

    def secure(self, request: Request) -> bool:
        """The cookie's Secure flag (`http.cookie_secure`)."""
        mode = self.cfg.cookie_secure
        return mode == "always" or (mode == "auto" and request.scope.get("scheme") == "https")


def remember(request: Request, check: Check) -> None:
    """Leave the guard's verdict on the request for the routes."""
    request.scope.setdefault("state", {})[_STATE_KEY] = check


def checked(request: Request) -> Check | None:
    """The verdict the guard left on this request, if a guard ran."""
    got = request.scope.get("state", {}).get(_STATE_KEY)
    return got if isinstance(got, Check) else None


def may_read(request: Request) -> bool:
    """Whether the guard found this request signed in (or no token is configured)."""
    got = checked(request)
    return got is not None and got.may_read

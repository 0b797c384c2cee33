"""What stands between the network and the routes: which hosts and origins may talk to the
device, who is authenticated, and connections that never finish a request.

- **Host allow-list**: a browser page on another site whose name resolves to this device (DNS
  rebinding) sends its own name as `Host`; only loopback names, the bound address and
  `http.allowed_hosts` are answered.
- **Origin**: a state-changing request (POST...) carrying an `Origin` other than the device's
  own or `http.allowed_origins` is refused, so a page the user visits cannot upload.
- **Token**: with `http.token` (or `http.token_file`) set, data routes want
  `Authorization: Bearer <token>` or the session cookie `POST /login` sets (`edge.api.auth`,
  `edge.api.session`). The page, its assets, `/login`, `/logout` and `/session` load without
  it, and `/healthz` says only its status. A client that sent too many wrong tokens gets a 429
  with `Retry-After` on the routes that want one (`edge.api.throttle`).
- **Load**: at most `http.limit_concurrency` requests in progress (more get a 503; /healthz
  always answers), counted here rather than by uvicorn, which counts idle connections too.
- **Slow clients and big heads**: uvicorn's HTTP protocols have no deadline for a request's
  headers; ours closes a connection that has not sent a complete request line and headers
  within `http.header_timeout_s`, answers 431 to a head over `MAX_HEAD_BYTES` (httptools,
  unlike h11, has no limit of its own), and beyond `http.max_connections` closes the oldest
  connection that is not in the middle of a request, so idle sockets cannot lock out /healthz.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge.api.auth import Auth, Verdict, remember, too_many_wrong
from edge.config import HttpConfig

OPEN_PATHS = ("/", "/login", "/logout", "/session", "/favicon.ico", "/healthz")
OPEN_PREFIXES = ("/static/",)
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_HEAD_BYTES = 64 * 1024
"""A request line and headers over this many bytes get a 431 (h11 stops at 16 KB)."""
_TOO_LARGE_BODY = b"request headers over the limit"
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; "
    b"charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
    % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """The checks every request passes before a route sees it: a plain ASGI middleware, not
    Starlette's `BaseHTTPMiddleware`, which runs the rest of the app in a task of its own at a
    cost on every request."""

    def __init__(self, app: ASGIApp, cfg: HttpConfig, auth: Auth | None = None) -> None:
        """`auth`: the token, sessions and throttle shared with the app's session routes
        (`edge.api.session.session_router`); one of its own from `cfg` when not given."""
        self.app = app
        self.auth = auth if auth is not None else Auth(cfg)
        self.hosts = LOOPBACK_NAMES | {h.lower() for h in cfg.allowed_hosts}
        bound = cfg.host.strip("[]").lower()
        if bound and not _unspecified(bound):
            self.hosts |= {bound, f"[{bound}]"}
        self.origins = {o.rstrip("/").lower() for o in cfg.allowed_origins}
        self.limit = cfg.limit_concurrency
        self.in_flight = 0

    def host_ok(self, request: Request) -> bool:
        return _host_name(request.headers.get("host", "")) in self.hosts

    def origin_ok(self, request: Request) -> bool:
        """No Origin (not a browser), the device's own, or an allowed one."""
        origin = request.headers.get("origin")
        if origin is None or request.method not in UNSAFE_METHODS:
            return True
        origin = origin.rstrip("/").lower()
        own = {f"{s}://{request.headers.get('host', '').lower()}" for s in ("http", "https")}
        return origin in own or origin in self.origins

    def needs_token(self, path: str) -> bool:
        return not (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))

    def refusal(self, request: Request) -> Response | None:
        """The answer to a request that may not reach the routes; None for one that may."""
        if not self.host_ok(request):
            return JSONResponse(
                {"detail": "this Host is not served (http.allowed_hosts)"}, status_code=421
            )
        if not self.origin_ok(request):
            return JSONResponse(
                {"detail": "cross-origin request refused (http.allowed_origins)"}, status_code=403
            )
        path = request.scope["path"]  # not `request.url`: building it cost ~2% of a request
        check = self.auth.check(request)
        remember(request, check)
        if self.needs_token(path) and not check.may_read:
            return _unauthorized(check.verdict, check.retry_after_s)
        if self.in_flight >= self.limit and path != "/healthz":
            return JSONResponse(
                {"detail": "too many requests in progress; try again shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(Request(scope))
        if refused is not None:
            await refused(scope, receive, send)
            return
        self.in_flight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def _unauthorized(verdict: Verdict, wait_s: float) -> Response:
    if verdict is Verdict.THROTTLED:
        detail, headers = too_many_wrong(wait_s)
        return JSONResponse({"detail": detail}, status_code=429, headers=headers)
    return JSONResponse(
        {"detail": "missing or wrong bearer token"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers, a cap on
    their size and one on open connections (`configure` sets the deadline and the cap on
    connections from the config before the server starts). httptools rather than h11: it
    parses in C, so a request costs less server CPU."""

    header_timeout_s = 10.0
    max_connections = 256

    @classmethod
    def configure(cls, cfg: HttpConfig) -> type[GuardedProtocol]:
        return type(
            "ConfiguredProtocol",
            (cls,),
            {"header_timeout_s": cfg.header_timeout_s, "max_connections": cfg.max_connections},
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._since = self.loop.time()
        if len(self.connections) > self.max_connections:
            self._evict_one()
        self._arm()

    def _evict_one(self) -> None:
        guarded = [c for c in self.connections if isinstance(c, GuardedProtocol)]
        idle = [c for c in guarded if c is not self and c._waiting()]
        if idle:
            oldest = min(idle, key=lambda c: c._since)
            oldest.transport.close()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        if self.cycle is not None and self.cycle is not before:
            self._disarm()  # a new request's headers are in
            self._head_bytes = 0
        elif self._waiting():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.transport.write(TOO_LARGE)
                self.transport.close()
            elif self._header_timer is None:
                self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle between requests: uvicorn's keep-alive timeout applies

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        timer: Any = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self._waiting() and not self.transport.is_closing():
            self.transport.close()

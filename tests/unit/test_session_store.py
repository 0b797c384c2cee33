"""Sessions on a clock moved by hand: random ids, an expiry kept by the server, revocation,
the binding to the token in force, and a cap on how many are kept."""

from __future__ import annotations

from typing import Any

from support.clock import FakeClock

from edge.api.auth import SESSION_COOKIE, Auth, Verdict
from edge.api.session_store import SessionStore
from edge.config import HttpConfig


def request(cookie: str = "", authorization: str = "") -> Any:
    from fastapi import Request

    headers = []
    if cookie:
        headers.append((b"cookie", f"{SESSION_COOKIE}={cookie}".encode()))
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    scope = {"type": "http", "headers": headers, "client": ("192.0.2.1", 4000), "path": "/"}
    return Request(scope)


def test_every_session_id_is_new_and_random():
    """A session id must say nothing about the next one, nor about the token."""
    store = SessionStore(60, 1000)
    ids = {store.create("b") for _ in range(500)}
    assert len(ids) == 500 and all(len(i) >= 43 for i in ids)
    assert store.count() == 500


def test_a_session_expires_on_the_server_whatever_the_client_keeps():
    """A cookie a client keeps (or copies) past its Max-Age is refused by the server too."""
    clock = FakeClock()
    store = SessionStore(100, 10, clock)
    sid = store.create("b")
    assert store.left(sid, "b") == 100
    clock.advance(99.5)
    assert store.left(sid, "b") == 0.5
    clock.advance(0.5)
    assert store.left(sid, "b") is None
    assert store.count() == 0


def test_revoked_sessions_and_sessions_of_another_token_are_refused():
    clock = FakeClock()
    store = SessionStore(100, 10, clock)
    a, b = store.create("token-1"), store.create("token-1")
    assert store.revoke(a) and not store.revoke(a)
    assert store.left(a, "token-1") is None and store.left(b, "token-1") is not None
    assert store.left(b, "token-2") is None  # granted under another token: gone for good
    assert store.left(b, "token-1") is None
    store.create("token-1")
    assert store.revoke_all() == 1 and store.count() == 0
    assert store.left("", "token-1") is None and store.left("made-up", "token-1") is None


def test_beyond_the_cap_the_oldest_session_ends():
    """Logins cannot grow the table without bound."""
    clock = FakeClock()
    store = SessionStore(100, 3, clock)
    ids = []
    for _ in range(5):
        ids.append(store.create("b"))
        clock.advance(1)
    assert [store.left(i, "b") is not None for i in ids] == [False, False, True, True, True]
    assert store.count() == 3


def test_a_new_token_ends_every_session_granted_under_the_old_one():
    """Sessions are bound to the token in force: changing it signs everyone out."""
    clock = FakeClock()
    auth = Auth(HttpConfig(token="first", session_max_age_s=60), clock=clock)
    sid = login(auth)
    assert auth.check(request(cookie=sid)).verdict is Verdict.SIGNED_IN
    auth.set_token("second")
    assert auth.check(request(cookie=sid)).verdict is Verdict.MISSING
    assert auth.check(request(authorization="Bearer second")).verdict is Verdict.SIGNED_IN
    clock.advance(61)
    assert auth.check(request(authorization="Bearer first")).verdict is Verdict.WRONG


def test_wrong_bearer_tokens_are_throttled_and_a_waiting_client_is_not_compared():
    """While a client waits, even the right token gets the same answer as a wrong one: no
    guess is answered until the wait ends."""
    clock = FakeClock()
    auth = Auth(HttpConfig(token="right", login_attempts=2), clock=clock)
    verdicts = [auth.check(request(authorization="Bearer nope")).verdict for _ in range(3)]
    assert verdicts == [Verdict.WRONG, Verdict.WRONG, Verdict.THROTTLED]
    got = auth.check(request(authorization="Bearer right"))
    assert got.verdict is Verdict.THROTTLED and got.retry_after_s == 1
    clock.advance(1)
    assert auth.check(request(authorization="Bearer right")).verdict is Verdict.SIGNED_IN
    assert auth.check(request(authorization="Bearer nope")).verdict is Verdict.WRONG


def test_without_a_token_every_request_is_open():
    auth = Auth(HttpConfig())
    assert not auth.token_required
    assert auth.check(request(authorization="Bearer anything")).verdict is Verdict.OPEN


def login(auth: Auth) -> str:
    """A session started as `/login` starts one; its id, from the Set-Cookie header."""
    from fastapi import Response

    response = Response()
    auth.start_session(request(), response)
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "max-age=" in cookie.lower()
    return cookie.split(";")[0].split("=", 1)[1]

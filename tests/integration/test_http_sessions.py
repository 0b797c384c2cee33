"""Sign-in on a real daemon over HTTP: wrong tokens cost time per client, sessions are random,
expire and end at `/logout`, the page can ask `/session` without a failing request, the token
can come from a credential file, and a server on a network with no token says so at start."""

from __future__ import annotations

import concurrent.futures as cf
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.common import wait_until

from edge.analysis.swap import StartupError


def client(d: Any, local: str = "127.0.0.1", **headers: str) -> httpx.Client:
    """A client of `d` from the loopback address `local` (another address: another client)."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{d.port}",
        headers=headers,
        timeout=30,
        transport=httpx.HTTPTransport(local_address=local),
    )


def session_cookie(r: httpx.Response) -> str:
    return r.cookies["s3e_session"]


def as_session(d: Any, sid: str, path: str = "/search") -> int:
    """The status of a request carrying `sid` as its cookie, whatever a client jar would do."""
    r = httpx.get(f"http://127.0.0.1:{d.port}{path}", headers={"Cookie": f"s3e_session={sid}"})
    return r.status_code


@pytest.fixture
def token_daemon(edge_config: Any, daemon_factory: Any) -> Any:
    return daemon_factory(edge_config(http__token="s3cret"))


def test_wrong_bearer_tokens_are_slowed_per_client_until_the_wait_ends(
    token_daemon: Any, caplog: pytest.LogCaptureFixture
):
    """Guessing the token at full speed does not work: after a few wrong tokens a client gets
    429 with Retry-After, even for the right token, and one log line for the whole burst; the
    wait runs out, the right token then works and clears the count, and another client is
    never held up by the first one's guesses."""
    d = token_daemon
    right = {"Authorization": "Bearer s3cret"}
    with caplog.at_level(logging.WARNING, logger="s3e.http"), client(d) as guesser:
        for i in range(5):
            wrong = guesser.get("/search", headers={"Authorization": f"Bearer guess-{i}"})
            assert wrong.status_code == 401
        held = guesser.get("/search", headers=right)  # within the first wait (1 s)
        assert held.status_code == 429 and held.headers["retry-after"] == "1"
        got = [
            guesser.get("/search", headers={"Authorization": f"Bearer guess-{i}"}).status_code
            for i in range(300)
        ]
        # a wait that ran out lets one guess through, which doubles the next wait
        assert got.count(401) <= 5 and got.count(429) >= 295
        with client(d, local="127.0.0.2") as bystander:
            assert bystander.get("/search", headers=right).status_code == 200
        wait_until(
            lambda: guesser.get("/search", headers=right).status_code == 200, 30, "the wait ends"
        )
        assert guesser.get("/search", headers={"Authorization": "Bearer x"}).status_code == 401
    lines = [r for r in caplog.records if "wrong tokens" in r.getMessage()]
    assert len(lines) == 1 and "127.0.0.1" in lines[0].getMessage()
    assert "guess-" not in caplog.text and "s3cret" not in caplog.text


def test_concurrent_wrong_logins_are_counted_one_by_one(token_daemon: Any):
    """Many guesses sent at once at `/login` are not all compared before the first is
    counted: beyond the free tries they get 429 with Retry-After."""
    d = token_daemon

    def guess(i: int) -> httpx.Response:
        with client(d) as c:
            return c.post("/login", json={"token": f"guess-{i}"})

    with cf.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(guess, range(64)))
    statuses = [r.status_code for r in got]
    assert 5 <= statuses.count(401) <= 8 and statuses.count(429) >= 56, statuses
    assert all(int(r.headers["retry-after"]) >= 1 for r in got if r.status_code == 429)
    with client(d) as c:
        wait_until(
            lambda: c.post("/login", json={"token": "s3cret"}).status_code == 204, 30, "signed in"
        )


def test_sessions_are_random_and_logout_ends_them_on_the_server(token_daemon: Any):
    """A session cookie is a fresh random id at each login, carries a Max-Age, and is refused
    once `/logout` has ended it, even when replayed."""
    d = token_daemon
    with client(d) as a, client(d) as b:
        ra, rb = (
            a.post("/login", json={"token": "s3cret"}),
            b.post("/login", json={"token": "s3cret"}),
        )
        assert ra.status_code == rb.status_code == 204
        first, second = session_cookie(ra), session_cookie(rb)
        assert first != second and "s3cret" not in first
        cookie = ra.headers["set-cookie"].lower()
        assert "max-age=43200" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert "path=/" in cookie and "secure" not in cookie  # plain http, cookie_secure auto
        assert a.get("/search").status_code == 200 and b.get("/search").status_code == 200
        assert a.post("/logout").status_code == 204
    assert as_session(d, first) == 401
    assert as_session(d, second) == 200


def test_a_new_login_ends_the_session_it_replaces(token_daemon: Any):
    with client(d := token_daemon) as c:
        old = session_cookie(c.post("/login", json={"token": "s3cret"}))
        new = session_cookie(c.post("/login", json={"token": "s3cret"}))
    assert old != new and as_session(d, old) == 401 and as_session(d, new) == 200


def test_a_session_expires_on_the_server(edge_config: Any, daemon_factory: Any):
    """A client that keeps its cookie past `http.session_max_age_s` is refused anyway."""
    d = daemon_factory(edge_config(http__token="s3cret", http__session_max_age_s=1))
    with client(d) as c:
        r = c.post("/login", json={"token": "s3cret"})
        assert "max-age=1" in r.headers["set-cookie"].lower()
        sid = session_cookie(r)
    assert as_session(d, sid) == 200, "the session works until it expires"
    wait_until(lambda: as_session(d, sid) == 401, 15, "the session to expire")


def test_beyond_max_sessions_the_oldest_ends_and_secure_can_be_forced(
    edge_config: Any, daemon_factory: Any
):
    """Logins cannot grow the session table without bound; behind a TLS proxy the cookie is
    Secure even though the request reached the device over plain http."""
    d = daemon_factory(
        edge_config(http__token="s3cret", http__max_sessions=2, http__cookie_secure="always")
    )
    responses = []
    for _ in range(3):
        with client(d) as c:
            responses.append(c.post("/login", json={"token": "s3cret"}))
    assert all("; secure" in r.headers["set-cookie"].lower() for r in responses)
    assert [as_session(d, session_cookie(r)) for r in responses] == [401, 200, 200]


def test_session_tells_the_page_whether_to_ask_without_a_401(
    token_daemon: Any, edge_config: Any, daemon_factory: Any
):
    """The page's first request must not fail: `/session` answers 200 whether or not the
    client is signed in, and says whether a token is needed at all."""
    with client(token_daemon) as c:
        before = c.get("/session")
        assert before.status_code == 200
        assert before.json() == {"token_required": True, "signed_in": False, "expires_in_s": None}
        c.post("/login", json={"token": "s3cret"})
        after = c.get("/session").json()
        assert after["signed_in"] and 43000 < after["expires_in_s"] <= 43200
        c.post("/logout")
        assert c.get("/session").json()["signed_in"] is False
    with client(token_daemon, Authorization="Bearer s3cret") as bearer:
        assert bearer.get("/session").json()["signed_in"] is True
    open_daemon = daemon_factory(edge_config(data_dir=str(Path(token_daemon.cfg.data_dir) / "o")))
    with client(open_daemon) as c:
        assert c.get("/session").json() == {
            "token_required": False,
            "signed_in": False,
            "expires_in_s": None,
        }
        assert c.post("/login", json={"token": "x"}).status_code == 400


def test_the_token_can_come_from_a_credential_file(
    edge_config: Any, daemon_factory: Any, tmp_path: Path
):
    """The config file need hold no secret: `http.token_file` names it, read at start; a
    file that cannot be read stops the start naming the key."""
    secret = tmp_path / "credentials" / "http-token"
    secret.parent.mkdir()
    secret.write_text("from-a-credential\n")
    d = daemon_factory(edge_config(http__token_file=str(secret)))
    with client(d) as anon, client(d, Authorization="Bearer from-a-credential") as ok:
        assert anon.get("/search").status_code == 401
        assert ok.get("/search").status_code == 200
    from edge.daemon import Daemon

    missing = edge_config(
        http__token_file=str(tmp_path / "nowhere"), data_dir=str(tmp_path / "other")
    )
    with pytest.raises(StartupError, match=r"http\.token_file"):
        Daemon(missing)


def test_listening_beyond_loopback_without_a_token_is_warned_at_start(
    edge_config: Any, daemon_factory: Any, caplog: pytest.LogCaptureFixture
):
    """An open API on the network is a choice the log must name: one line, naming
    `http.host` and `http.token`."""
    with caplog.at_level(logging.WARNING, logger="s3e.http"):
        d = daemon_factory(edge_config(http__host="0.0.0.0"))
    lines = [r.getMessage() for r in caplog.records if "http.token" in r.getMessage()]
    assert len(lines) == 1 and "http.host" in lines[0] and "0.0.0.0" in lines[0]
    with client(d) as c:
        assert c.get("/healthz").status_code == 200

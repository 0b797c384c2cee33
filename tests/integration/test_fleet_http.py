"""`s3e-fleet serve` behind the device's guard, on real processes: moto's S3 server holds the
archive (one image of one device) and its thumbnail; one fleet server has a token (from a
credential file), an allowed host name and its own session length; another has none and
listens beyond loopback.

The token server refuses every data route without the token or a session, answers only the
names it serves and only its own pages' state changes, trades the token for a random session
that `/logout` ends, slows wrong tokens, refuses a body over the limit before reading it,
serves no `/docs`, and marks its image links nosniff and private; its page signs in through
`/session` and `/login` like the device's. The open server answers as before, and says at
start that it is open to the network."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from support.common import ROOT, wait_until
from support.fleet_parts import event, serve, sha
from support.s3_servers import new_bucket, s3_section

from cloud_sync.client import make_client
from edge.analysis.bundle import load_bundle
from edge.config import ConfigError
from fleet.archive import Archive, row, vector_dims
from fleet.config import parse_config as fleet_config

pytest.importorskip("lancedb")
TOKEN = "fleet-token-0123456789"
SESSION_S = 600
"""Not the default (12 h): the fleet's own `http.session_max_age_s` is the one in force."""
DEVICE = "ward-a"


@dataclass
class Fleet:
    port: int
    """The token server's."""
    open: httpx.Client
    """A client of the server without a token."""
    open_log: Path
    result_id: str


def client(port: int, local: str = "127.0.0.1", **headers: str) -> httpx.Client:
    """A client from the loopback address `local` (another address: another client for the
    throttle), without the token unless `headers` carry it."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers=headers,
        timeout=30,
        transport=httpx.HTTPTransport(local_address=local),
    )


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def as_session(port: int, sid: str, path: str = "/search") -> int:
    """The status of a request carrying `sid` as its cookie, whatever a client jar would do."""
    r = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Cookie": f"s3e_session={sid}"})
    return r.status_code


def login(c: httpx.Client, token: str = TOKEN) -> httpx.Response:
    return c.post("/login", json={"token": token})


@pytest.fixture(scope="module")
def fleet(moto_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    bucket = new_bucket(moto_server)
    cfg = fleet_config(
        {"s3": s3_section(moto_server, bucket), "archive": {"uri": f"s3://{bucket}/fleet"}},
        "test",
    )
    image = sha("one image of the fleet")
    doc = event(DEVICE, image, bucket, latent=[0.0] * vector_dims(load_bundle("chest-int8"))[1])
    got = row(doc, DEVICE, cfg.s3.prefix, doc["urls"]["s3"], thumbnail=True)
    Archive.current(cfg, vector_dims(load_bundle(cfg.archive.bundle))).merge([got])
    jpeg = io.BytesIO()
    Image.new("L", (64, 64), 90).save(jpeg, "JPEG")
    make_client(cfg.s3).put_object(Bucket=bucket, Key=got["thumbnail_key"], Body=jpeg.getvalue())
    root = tmp_path_factory.mktemp("fleet-http")
    secret = root / "credentials" / "http-token"
    secret.parent.mkdir()
    secret.write_text(TOKEN + "\n")
    (root / "guarded").mkdir()
    (root / "open").mkdir()
    guarded_proc, guarded = serve(
        cfg,
        root / "guarded",
        token_file=str(secret),
        allowed_hosts=["fleet.example"],
        session_max_age_s=SESSION_S,
    )
    open_proc, open_client = serve(cfg, root / "open", host="0.0.0.0")
    port = int(guarded.base_url.port or 0)
    try:
        yield Fleet(port, open_client, root / "open" / "serve.log", f"{image}:{DEVICE}")
    finally:
        for proc, c in ((guarded_proc, guarded), (open_proc, open_client)):
            c.close()
            proc.send_signal(signal.SIGTERM)
        for proc in (guarded_proc, open_proc):
            assert proc.wait(20) == 0


def data_paths(result_id: str) -> dict[str, int]:
    """Each data route, and its status with the token (the row has no regions to match)."""
    return {
        "/search?q=effusion": 200,
        f"/images/{result_id}": 307,
        f"/images/{result_id}/thumb": 307,
        f"/images/{result_id}/match?q=effusion": 404,
        f"/images/{result_id}/similar": 200,
        f"/records/{result_id}": 200,
        "/openapi.json": 200,
    }


def test_every_data_route_wants_the_token_and_healthz_says_only_its_status(fleet: Fleet):
    """Whoever reaches the port learns nothing of any device's images without the token: each
    data route is a 401 naming the scheme; `/healthz` answers its status alone."""
    with client(fleet.port) as anon, client(fleet.port, **bearer()) as ok:
        for path, status in data_paths(fleet.result_id).items():
            r = anon.get(path, follow_redirects=False)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            assert ok.get(path, follow_redirects=False).status_code == status, path
        assert anon.get("/healthz").json() == {"status": "ok"}
        full = ok.get("/healthz").json()
        assert full["index_documents"] == 1 and full["bundle"]["name"]
        assert ok.get("/search", params={"q": "effusion"}).json()["results"][0]["id"] == (
            fleet.result_id
        )


def test_a_foreign_host_name_is_not_answered(fleet: Fleet):
    """DNS rebinding: a page on another site whose name resolves to the fleet sends its own
    name as Host; only loopback names and `http.allowed_hosts` are answered."""
    with client(fleet.port, **bearer()) as c:
        for host in ("attacker.example", f"attacker.example:{fleet.port}"):
            assert c.get("/search", headers={"Host": host}).status_code == 421, host
            assert c.get("/", headers={"Host": host}).status_code == 421, host
        for host in ("localhost", f"127.0.0.1:{fleet.port}", "fleet.example:8090"):
            assert c.get("/search", headers={"Host": host}).status_code == 200, host


def test_a_cross_origin_post_is_refused_even_with_a_session(fleet: Fleet):
    """A page on another site cannot end a session, nor sign in, in the user's name; the
    fleet's own page can."""
    evil = {"Origin": "https://attacker.example"}
    with client(fleet.port) as c:
        assert login(c).status_code == 204
        assert c.post("/logout", headers=evil).status_code == 403
        assert c.post("/login", json={"token": TOKEN}, headers=evil).status_code == 403
        assert c.get("/search").status_code == 200, "the session outlived the forged logout"
        own = {"Origin": f"http://127.0.0.1:{fleet.port}"}
        assert c.post("/logout", headers=own).status_code == 204
        assert c.get("/search").status_code == 401


def test_sessions_are_random_last_the_fleets_max_age_and_end_at_logout(fleet: Fleet):
    """The token buys a random session id, never the token itself, with the fleet's own
    Max-Age, HttpOnly and SameSite=Strict; a new login ends the one it replaces; `/logout`
    ends it on the server, so the cookie replayed is refused; `/session` tells the page."""
    port = fleet.port
    with client(port) as a, client(port) as b:
        assert a.get("/session").json() == {
            "token_required": True,
            "signed_in": False,
            "expires_in_s": None,
        }
        ra, rb = login(a), login(b)
        assert ra.status_code == rb.status_code == 204
        first, second = ra.cookies["s3e_session"], rb.cookies["s3e_session"]
        assert first != second and TOKEN not in first
        cookie = ra.headers["set-cookie"].lower()
        assert f"max-age={SESSION_S}" in cookie and "httponly" in cookie
        assert "samesite=strict" in cookie and "path=/" in cookie and "secure" not in cookie
        state = a.get("/session").json()
        assert state["signed_in"] and SESSION_S - 60 < state["expires_in_s"] <= SESSION_S
        assert a.get(f"/records/{fleet.result_id}").json()["device"] == DEVICE
        again = login(b).cookies["s3e_session"]
        assert as_session(port, second) == 401 and as_session(port, again) == 200
        assert a.post("/logout").status_code == 204
        assert a.get("/session").json()["signed_in"] is False
    assert as_session(port, first) == 401
    assert as_session(port, again) == 200


def test_wrong_tokens_are_slowed_per_client_and_the_right_one_works_after_the_wait(
    fleet: Fleet,
):
    """Guessing at full speed does not work: after a few wrong tokens (bearer or `/login`)
    the client gets 429 with Retry-After, the right token too, while another client is not
    held up; once the wait ends the right token works."""
    with client(fleet.port, local="127.0.0.7") as guesser:
        for i in range(3):
            assert guesser.get("/search", headers=bearer(f"guess-{i}")).status_code == 401
        for i in range(2):
            assert login(guesser, f"guess-login-{i}").status_code == 401
        held = guesser.get("/search", headers=bearer())
        assert held.status_code == 429 and held.headers["retry-after"] == "1"
        refused = login(guesser, f"guess-{TOKEN}")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        with client(fleet.port, local="127.0.0.8", **bearer()) as bystander:
            assert bystander.get("/search").status_code == 200
        wait_until(
            lambda: guesser.get("/search", headers=bearer()).status_code == 200, 30, "the wait"
        )
        assert login(guesser).status_code == 204


def test_a_json_body_over_the_limit_is_refused_before_it_is_read(fleet: Fleet):
    """An unauthenticated client cannot make the fleet hold a body of any size at `/login`:
    over `http.max_json_bytes` it is a 413 that closes the connection, declared or chunked;
    JSON nested past Python's stack is a 400."""
    big = b'{"token": "' + b"a" * 200_000 + b'"}'

    def chunked() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    with client(fleet.port, local="127.0.0.9") as c:
        declared = c.post("/login", content=big, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and "http.max_json_bytes" in declared.json()["detail"]
        streamed = c.post("/login", content=chunked())
        assert streamed.status_code == 413 and streamed.headers["connection"] == "close"
        assert c.post("/login", content=b"[" * 60_000).status_code == 400


def test_api_docs_are_off_and_the_schema_stays_behind_the_token(fleet: Fleet):
    """Swagger UI and ReDoc load their scripts from a CDN: not served, even signed in."""
    with client(fleet.port, **bearer()) as ok:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert ok.get(path).status_code == 404, path
        paths = ok.get("/openapi.json").json()["paths"]
        assert "/session" in paths and "/search" in paths


def test_presigned_image_links_are_nosniff_and_private(fleet: Fleet):
    """The redirects to an original or thumbnail are as private as the image: no shared
    cache keeps them, no browser guesses their type; the link itself works."""
    with client(fleet.port, **bearer()) as ok:
        for path in (f"/images/{fleet.result_id}", f"/images/{fleet.result_id}/thumb"):
            r = ok.get(path, follow_redirects=False)
            assert r.status_code == 307, path
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["cache-control"] == "private", path
        thumb = ok.get(f"/images/{fleet.result_id}/thumb", follow_redirects=False)
        assert httpx.get(thumb.headers["location"]).content[:2] == b"\xff\xd8"


def test_without_a_token_it_answers_as_before_and_warns_beyond_loopback(fleet: Fleet):
    """No token configured: every route answers, the page learns it need not sign in, and a
    server listening beyond loopback says so at start, naming both keys."""
    c = fleet.open
    assert c.get("/search", params={"q": "effusion"}).json()["total"] == 1
    assert c.get(f"/images/{fleet.result_id}/thumb", follow_redirects=False).status_code == 307
    assert c.get(f"/records/{fleet.result_id}").json()["device"] == DEVICE
    assert c.get("/healthz").json()["index_documents"] == 1
    assert c.get("/session").json()["token_required"] is False
    assert c.post("/login", json={"token": "x"}).status_code == 400
    lines = [ln for ln in fleet.open_log.read_text().splitlines() if "http.token" in ln]
    assert len(lines) == 1 and "http.host" in lines[0] and "0.0.0.0" in lines[0]


def test_the_fleets_http_keys_are_the_devices_with_its_own_port():
    """One set of keys for both servers, checked by the same rules: every device key is
    taken, a bad value or two sources of one token is an error naming the key, and only the
    default port differs, so an existing fleet file still means what it meant."""
    device_keys = {
        "token_file": "/run/credentials/s3e-fleet.service/http-token",
        "allowed_hosts": ["fleet.example"],
        "allowed_origins": ["https://fleet.example"],
        "session_max_age_s": 60.0,
        "max_sessions": 8,
        "cookie_secure": "always",
        "login_attempts": 3,
        "login_backoff_max_s": 30.0,
        "max_json_bytes": 4096,
        "header_timeout_s": 5.0,
        "max_connections": 32,
        "limit_concurrency": 8,
        "body_idle_s": 5.0,
        "body_timeout_s": 30.0,
    }
    got = fleet_config({"http": device_keys}, "fleet.toml").http
    assert {k: getattr(got, k) for k in device_keys} == device_keys
    assert (got.host, got.port) == ("127.0.0.1", 8090)
    assert fleet_config({"http": {"host": "0.0.0.0", "port": 9000}}).http.port == 9000
    with pytest.raises(ConfigError, match=r"http\.token or http\.token_file, not both"):
        fleet_config({"http": {"token": "a", "token_file": "/x"}}, "fleet.toml")
    for key, value in (("cookie_secure", "sometimes"), ("max_sessions", 0), ("max_json_bytes", 9)):
        with pytest.raises(ConfigError, match=rf"fleet\.toml: http\.{key}: (?!unknown)"):
            fleet_config({"http": {key: value}}, "fleet.toml")
    with pytest.raises(ConfigError, match=r"http\.enabled"):
        fleet_config({"http": {"enabled": False}}, "fleet.toml")


def test_an_unreadable_token_file_stops_the_start_naming_the_key(tmp_path: Path):
    """A credential that cannot be read must not leave the routes open without a word."""
    toml = tmp_path / "fleet.toml"
    toml.write_text(f'[http]\nport = 0\ntoken_file = "{tmp_path / "nowhere"}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "serve", "--config", str(toml)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "http.token_file" in done.stderr and "No such file" in done.stderr, done.stderr


def test_the_page_signs_in_through_session_and_login(fleet: Fleet, tmp_path: Path):
    """The device's page against the fleet with a token: it asks `/session` first and shows
    the sign-in dialog with no failed request; the token gets it the results, thumbnails
    from S3 included; a reload goes straight to them."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's chromium is not installed (scripts/system-deps.sh installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            context = browser.new_context()
            pg = context.new_page()
            errors: list[str] = []
            failed: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
            pg.goto(f"http://127.0.0.1:{fleet.port}/?q=effusion&mode=keyword")
            pg.wait_for_selector("#login[open]")
            pg.wait_for_load_state("networkidle")
            assert errors == [] and failed == []
            pg.fill("#token", TOKEN)
            pg.click("#login-form button")
            pg.wait_for_function(
                "() => { const i = [...document.querySelectorAll('.card img')];"
                " return i.length && i.every(x => x.complete && x.naturalWidth > 0); }"
            )
            pg.reload()
            pg.wait_for_selector(".card img")
            pg.wait_for_load_state("networkidle")
            assert not pg.is_visible("#login")
            assert errors == [] and failed == [], (errors, failed)
            pg.screenshot(path=str(tmp_path / "fleet-page.png"))
        finally:
            browser.close()

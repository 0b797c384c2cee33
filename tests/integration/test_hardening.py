"""One regression test per row of the security and robustness review: each sends
what the review sent and checks what must happen instead."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from support import dicom_files
from support.clock import FakeClock
from support.common import ROOT, wait_until
from support.hostile import encoded, jpeg_claiming, png_claiming, png_zeros

from edge.api.guard import MAX_HEAD_BYTES
from edge.ingest.imaging import DecodeBudget, ImageRejectedError, decode

GOOD = encoded(Image.fromarray(np.full((40, 50, 3), 120, np.uint8)), "PNG")


def client(d: Any, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{d.port}", headers=headers, timeout=30)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


@pytest.fixture
def quiet_daemon(edge_config: Any, daemon_factory: Any) -> Any:
    """A daemon with an empty folder and uploads on."""
    cfg = edge_config()
    Path(cfg.capture.folder.path).mkdir(parents=True)
    return daemon_factory(cfg)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked_daemon_factory(clock: FakeClock) -> Iterator[Callable[[Any], Any]]:
    """Like `daemon_factory`, for daemons whose health cache ages by `clock` alone."""
    from edge.daemon import Daemon

    started: list[Daemon] = []

    def start(cfg: Any) -> Daemon:
        d = Daemon(cfg, clock=clock)
        started.append(d)
        d.start()
        return d

    yield start
    for d in started:
        if not d.stopping.is_set():
            d.stop()


def rejected(d: Any) -> list[Path]:
    return sorted(
        p
        for p in (Path(d.cfg.data_dir) / "rejected").iterdir()
        if not p.name.endswith(".reason.txt")
    )


# 1 -- a query that crashed the process -------------------------------------------------------
@pytest.mark.parametrize("q", ["(" * 3000, "(" * 4000 + "a" + ")" * 4000, "a " * 5000])
def test_a_deeply_nested_or_huge_query_is_a_400_and_the_daemon_lives(quiet_daemon: Any, q: str):
    with client(quiet_daemon) as c:
        r = c.get("/search", params={"q": q})
        assert r.status_code == 400, r.text
        assert "at most" in r.json()["detail"] or "deeper" in r.json()["detail"]
        assert c.get("/healthz").json()["status"] == "ok"


def test_unbalanced_parentheses_say_where(quiet_daemon: Any):
    with client(quiet_daemon) as c:
        assert "position 8" in c.get("/search", params={"q": "caption:(pneumonia"}).json()["detail"]
        assert "position 1" in c.get("/search", params={"q": "a)"}).json()["detail"]


# 2, 3, 4, 15 -- what the folder can be handed --------------------------------------------------
def test_links_to_devices_fifos_and_private_files_and_huge_files_are_refused_unread(
    quiet_daemon: Any, tmp_path: Path
):
    d = quiet_daemon
    inbox = Path(d.cfg.capture.folder.path)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.png"
    secret.write_bytes(encoded(Image.new("RGB", (30, 30), (9, 9, 9)), "PNG"))
    secret.chmod(0o600)
    os.mkfifo(outside / "pipe")
    reset_peak_rss()
    before = peak_rss_mb()
    (inbox / "zero.jpg").symlink_to("/dev/zero")
    (inbox / "fifo-link.png").symlink_to(outside / "pipe")
    (inbox / "secret.png").symlink_to(secret)
    os.mkfifo(inbox / "fifo.jpg")
    with open(inbox / "huge.png", "wb") as f:
        f.truncate(1 << 30)
    (inbox / "good.png").write_bytes(GOOD)
    wait_until(lambda: d.store.counts().get("analysed", 0) == 1, 30, "the good image analysed")
    wait_until(lambda: len(rejected(d)) == 5, 30, "five refusals")
    kinds = sorted(
        p.with_name(p.name + ".reason.txt").read_text().split("kind: ")[1].split()[0]
        for p in rejected(d)
    )
    assert kinds == ["not_a_file", "symlink", "symlink", "symlink", "too_large"]
    assert peak_rss_mb() - before < 100, "a refused file was read into memory"
    assert not d.store.has(hashlib.sha256(secret.read_bytes()).hexdigest())
    assert d.health()["status"] == "ok"


def test_links_are_followed_only_into_the_allowed_folders(
    edge_config: Any, daemon_factory: Any, tmp_path: Path
):
    allowed, other = tmp_path / "camera-share", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (allowed / "a.png").write_bytes(GOOD)
    (other / "b.png").write_bytes(encoded(Image.new("RGB", (20, 20), (3, 200, 3)), "PNG"))
    cfg = edge_config(
        capture__folder__follow_symlinks=True, capture__folder__symlink_roots=[str(allowed)]
    )
    inbox = Path(cfg.capture.folder.path)
    inbox.mkdir(parents=True)
    (inbox / "a.png").symlink_to(allowed / "a.png")
    (inbox / "b.png").symlink_to(other / "b.png")
    d = daemon_factory(cfg)
    wait_until(lambda: d.store.counts().get("analysed", 0) == 1 and len(rejected(d)) == 1, 30)
    assert (
        "outside capture.folder.symlink_roots"
        in rejected(d)[0].with_name(rejected(d)[0].name + ".reason.txt").read_text()
    )


def test_a_stuck_capture_source_is_reported_and_withholds_the_watchdog(
    edge_config: Any,
    clocked_daemon_factory: Any,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
):
    from edge.daemon import HEALTH_TTL_S

    cfg = edge_config()
    Path(cfg.capture.folder.path).mkdir(parents=True)
    d = clocked_daemon_factory(cfg)
    source = d.sources[0].source
    source.stall_after_s = 0.5
    release = threading.Event()
    monkeypatch.setattr("edge.capture.folder.read_file", lambda *a: release.wait(30) and b"")
    (Path(d.cfg.capture.folder.path) / "x.png").write_bytes(GOOD)
    wait_until(lambda: "capture-folder (stalled)" in d.dead_threads(), 10, "a stall seen")
    clock.advance(HEALTH_TTL_S + 0.1)  # the health document is cached for 2 s
    assert d.health()["status"] == "degraded"
    release.set()


def test_a_truncated_tiff_gets_a_second_look_before_it_is_refused(quiet_daemon: Any):
    d = quiet_daemon
    inbox = Path(d.cfg.capture.folder.path)
    tiff = encoded(
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 60, 3), dtype=np.uint8)),
        "TIFF",
    )
    (inbox / "scan.tif").write_bytes(tiff[:3000])
    folder = d.sources[0].source
    wait_until(lambda: inbox / "scan.tif" in folder.awaiting_second_look, 10, "a suspect")
    (inbox / "scan.tif").write_bytes(tiff)  # the writer finished after all
    wait_until(lambda: d.store.counts().get("analysed", 0) == 1, 30, "the tiff taken")
    assert not rejected(d)


# 5, 6 -- browsers on other sites --------------------------------------------------------------
def test_uploads_must_be_preflighted_and_from_the_devices_own_origin(quiet_daemon: Any):
    with client(quiet_daemon) as c:
        evil = {"Origin": "https://attacker.example"}
        files = {"file": ("a.png", GOOD, "image/png")}
        assert (
            c.post(
                "/images", content=GOOD, headers={**evil, "Content-Type": "image/png"}
            ).status_code
            == 403
        )
        assert c.post("/images", files=files, headers=evil).status_code == 403
        for kind in ("text/plain", "application/x-www-form-urlencoded"):
            assert (
                c.post("/images", content=GOOD, headers={"Content-Type": kind}).status_code == 415
            )
        assert c.post("/images", files=files).status_code == 415
        assert c.post("/images", content=GOOD).status_code == 415
        own = {"Origin": f"http://127.0.0.1:{quiet_daemon.port}", "X-S3E-Request": "1"}
        assert c.post("/images", files=files, headers=own).status_code == 201
        other = encoded(Image.new("RGB", (30, 30), (5, 5, 5)), "PNG")
        r = c.post("/images", content=other, headers={"Content-Type": "image/png"})
        assert r.status_code == 201
    assert (
        quiet_daemon.store.counts()["pending"] + quiet_daemon.store.counts().get("analysed", 0) == 2
    )


def test_a_foreign_host_name_is_not_answered(edge_config: Any, daemon_factory: Any):
    d = daemon_factory(edge_config(http__allowed_hosts=["edge-01.local"]))
    with client(d) as c:
        assert c.get("/search", headers={"Host": "attacker.example"}).status_code == 421
        assert c.get("/images/x", headers={"Host": "attacker.example:8080"}).status_code == 421
        for host in ("localhost", f"localhost:{d.port}", "127.0.0.1", "edge-01.local:80"):
            assert c.get("/search", headers={"Host": host}).status_code == 200, host


# 7, 10 -- small files that decode huge, formats we do not take ---------------------------------
@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (png_claiming(8000, 8000), "too_large"),
        (png_claiming(1, 64_000_000), "too_large"),
        (jpeg_claiming(8000, 8000), "too_large"),
        (encoded(Image.new("RGB", (16, 16)), "TGA"), "not_an_image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8000 8000\nshowpage\n", "not_an_image"),
    ],
    ids=["png-8000x8000", "png-1x64M", "jpeg-8000x8000", "tga", "eps"],
)
def test_claimed_sizes_over_the_caps_and_other_formats_are_refused_before_decoding(
    data: bytes, kind: str
):
    reset_peak_rss()
    before = peak_rss_mb()
    with pytest.raises(ImageRejectedError) as e:
        decode(data, 50_000_000, 20000)
    assert e.value.kind == kind
    assert peak_rss_mb() - before < 20


def test_large_decodes_are_bounded_and_shrunk_at_once():
    budget = DecodeBudget(256 << 20, 10)
    for data, cap_mb in (
        (png_zeros(5000, 5000, 16), 120),
        (png_zeros(4000, 4000, 8, 6), 140),
        (encoded(Image.fromarray(np.zeros((3000, 3000), np.float32)), "TIFF"), 120),
    ):
        reset_peak_rss()
        before = peak_rss_mb()
        got = decode(data, 50_000_000, 20000, 256, budget)
        assert max(got.image.size) <= 512 and got.width >= 3000
        assert peak_rss_mb() - before < cap_mb


def test_a_busy_decode_budget_is_a_503_for_uploads(quiet_daemon: Any):
    d = quiet_daemon
    d.ingestor.budget.wait_s = 0.2
    with d.ingestor.budget.reserve(d.ingestor.budget.max_bytes), client(d) as c:
        r = c.post("/images", content=GOOD, headers={"Content-Type": "image/png"})
    assert r.status_code == 503 and r.headers["retry-after"]


def test_a_dicoms_first_view_waits_for_the_decode_budget_too(quiet_daemon: Any):
    """The PNG a browser gets of a stored DICOM is decoded at its first asking, under the
    same budget as the ingest: while the budget is full it is a 503, then it is served."""
    d = quiet_daemon
    d.ingestor.budget.wait_s = 0.2
    with client(d) as c:
        dcm = dicom_files.write(dicom_files.chest_phantom(256), identity=False)
        rid = c.post("/images", content=dcm, headers={"Content-Type": "application/dicom"})
        rid = rid.json()["id"]
        with d.ingestor.budget.reserve(d.ingestor.budget.max_bytes):
            busy = c.get(f"/images/{rid}")
        assert busy.status_code == 503 and busy.headers["retry-after"], busy.text
        view = c.get(f"/images/{rid}")
    assert view.status_code == 200 and view.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(view.content)).size == (256, 256)


# 8 -- slow and idle clients ---------------------------------------------------------------------
def test_idle_and_slow_connections_are_closed_and_healthz_still_answers(
    edge_config: Any, daemon_factory: Any
):
    d = daemon_factory(
        edge_config(http__header_timeout_s=1.0, http__max_connections=64, http__body_idle_s=1.0)
    )
    socks = []
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", d.port))
        if i % 2:
            s.sendall(b"GET /search?q=a HTTP/1.1\r\nHost: loc")  # half a request
        socks.append(s)
    t0 = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{d.port}/healthz", timeout=10)
    assert r.status_code == 200 and time.monotonic() - t0 < 5
    # wait on each connection until the server closes it (idle, or half a request, for
    # longer than header_timeout_s); one still open at the deadline is not closed
    deadline = time.monotonic() + 30
    closed = 0
    for s in socks:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            closed += s.recv(1) == b""
        except TimeoutError:
            pass
        except OSError:  # reset by the server: closed too
            closed += 1
        s.close()
    assert closed == len(socks)
    slow = socket.create_connection(("127.0.0.1", d.port))
    slow.sendall(
        b"POST /images HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
        b"Content-Length: 100000\r\n\r\n" + GOOD[:10]
    )
    slow.settimeout(10)
    assert b" 408 " in slow.recv(200)
    slow.close()
    big = socket.create_connection(("127.0.0.1", d.port))  # headers without end: 431, closed
    big.settimeout(10)
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: "
    big.sendall(head.ljust(MAX_HEAD_BYTES + 1, b"a"))  # one byte over: none left unread
    assert b" 431 " in big.recv(200) and big.recv(200) == b""
    big.close()
    assert httpx.get(f"http://127.0.0.1:{d.port}/healthz", timeout=10).status_code == 200


def test_repeated_errors_are_rate_limited_in_the_log():
    from edge.logs import RateLimit

    f = RateLimit(burst=3, window_s=60)
    recs = [
        logging.LogRecord("s3e", logging.ERROR, "x", 1, "cannot list %s", ("a",), None)
        for _ in range(1000)
    ]
    assert sum(f.filter(r) for r in recs) == 3


# 9 -- /healthz --------------------------------------------------------------------------------
def test_healthz_is_cached_and_without_the_token_says_only_its_status(
    edge_config: Any, clocked_daemon_factory: Any, monkeypatch: pytest.MonkeyPatch
):
    # the clock stands still: however slowly the 51 requests go, the cache has not expired
    d = clocked_daemon_factory(edge_config(http__token="s3cret"))
    calls = []
    real = d.store.counts
    monkeypatch.setattr(d.store, "counts", lambda: calls.append(1) or real())
    with client(d) as anon, client(d, Authorization="Bearer s3cret") as ok:
        for _ in range(50):
            assert anon.get("/healthz").json() == {"status": "ok"}
        full = ok.get("/healthz").json()
    assert "records" in full and "mqtt" in full
    assert len(calls) <= 2


# 11 -- odd parameters ---------------------------------------------------------------------------
def test_odd_words_and_unrunnable_queries_are_4xx_not_500(edge_config: Any, daemon_factory: Any):
    cfg = edge_config()
    Path(cfg.capture.folder.path).mkdir(parents=True)
    (Path(cfg.capture.folder.path) / "a.png").write_bytes(GOOD)
    d = daemon_factory(cfg)
    wait_until(lambda: d.indexes.keyword.num_docs == 1, 30, "indexed")
    rid = next(d.store.iter_analysed()).id
    with client(d) as c:
        for word in ("²", "9" * 5000, "-1", "\uff11"):
            assert c.get(f"/images/{rid}/attention", params={"word": word}).status_code == 404
        for q in ("caption:*", "id:*", "anomaly:[a TO b]"):
            assert c.get("/search", params={"q": q}).status_code == 400, q


# 12, 13 -- file names ---------------------------------------------------------------------------
def test_long_and_newline_names_are_rejected_under_safe_names_and_logged_escaped(
    quiet_daemon: Any, caplog: pytest.LogCaptureFixture
):
    d = quiet_daemon
    inbox = Path(d.cfg.capture.folder.path)
    long_name = "a" * 240 + ".png"
    (inbox / long_name).write_bytes(b"not an image")
    (inbox / "x\nERROR forged line.png").write_bytes(b"not an image either")
    with caplog.at_level(logging.INFO):
        wait_until(lambda: len(rejected(d)) == 2, 30, "both refused")
    names = [p.name for p in rejected(d)]
    assert all(len(n) < 130 and "\n" not in n for n in names)
    reasons = " ".join(p.with_name(p.name + ".reason.txt").read_text() for p in rejected(d))
    assert long_name in reasons and "x\\nERROR forged line.png" in reasons
    assert not list(inbox.iterdir())
    assert not any(line.startswith("ERROR forged") for line in caplog.text.splitlines())


# 14 -- the page with a token ---------------------------------------------------------------------
def test_the_page_loads_with_a_token_and_login_sets_a_strict_httponly_cookie(
    edge_config: Any, daemon_factory: Any
):
    d = daemon_factory(edge_config(http__token="s3cret"))
    with client(d) as c:
        assert c.get("/").status_code == 200
        assert c.get("/search").status_code == 401
        assert c.post("/login", json={"token": "nope"}).status_code == 401
        r = c.post("/login", json={"token": "s3cret"})
        assert r.status_code == 204
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "s3cret" not in cookie
        assert c.get("/search").status_code == 200  # the client keeps the cookie
        c.post("/logout")
        c.cookies.clear()
        assert c.get("/search").status_code == 401


# 16, 17, 18, 19 ----------------------------------------------------------------------------------
def test_check_config_show_masks_every_secret(tmp_path: Path):
    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        '[http]\ntoken = "tok-123"\n[mqtt]\nhost = "b"\nusername = "u"\n'
        'password = "pw-456"\n[s3]\nbucket = "s3e-test"\naccess_key_id = "k"\n'
        'secret_access_key = "sk-789"\n'
    )
    cfg.chmod(0o600)
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "check-config", "-c", str(cfg), "--show"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    for secret in ("tok-123", "pw-456", "sk-789"):
        assert secret not in r.stdout + r.stderr
    assert json.loads(r.stdout.split("\n", 1)[1])["http"]["token"] == "**********"


def test_a_bundle_entry_outside_its_folder_is_refused(tmp_path: Path):
    import shutil

    from edge.analysis.bundle import SHIPPED_DIR, BundleError, load_bundle

    b = tmp_path / "b"
    shutil.copytree(SHIPPED_DIR / "chest-int8", b)
    doc = json.loads((b / "bundle.json").read_text())
    (tmp_path / "elsewhere").write_text("[]")
    doc["assets"]["vocab"]["file"] = "../elsewhere"
    (b / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="outside the bundle folder"):
        load_bundle(b)


def test_the_page_renders_record_fields_as_text_only():
    page = (ROOT / "edge" / "api" / "static" / "index.html").read_text()
    assert "innerHTML" not in page and "outerHTML" not in page and "insertAdjacentHTML" not in page


def test_files_left_between_write_and_commit_are_swept_at_start(
    edge_config: Any, daemon_factory: Any
):
    from edge.store.store import Store

    cfg = edge_config()
    store = Store(cfg.data_dir, cfg.device_id)
    orphan = store.original_path("ab" + "0" * 62, "png")
    store.write_atomic(orphan, GOOD)
    store.write_atomic(store.derived_path("ab" + "0" * 62, "thumb.jpg"), b"jpeg")
    store.close()
    d = daemon_factory(cfg)
    assert not orphan.exists() and not d.store.derived_path("ab" + "0" * 62, "thumb.jpg").exists()


# request bodies, API docs, image answers ---------------------------------------------------------
def test_json_bodies_over_the_limit_are_refused_before_they_are_read(quiet_daemon: Any):
    """An unauthenticated client cannot make the daemon hold a body of any size: a JSON body
    over `http.max_json_bytes` is a 413 that closes the connection, whether its size is
    declared or it arrives chunked; JSON nested past Python's stack is a 400, not a 500."""
    big = b'{"token": "' + b"a" * 200_000 + b'"}'

    def chunked() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    with client(quiet_daemon) as c:
        for path in ("/login", "/admin/bundle"):
            declared = c.post(path, content=big, headers={"Content-Type": "application/json"})
            assert declared.status_code == 413, path
            assert "http.max_json_bytes" in declared.json()["detail"]
            streamed = c.post(path, content=chunked())
            assert streamed.status_code == 413 and streamed.headers["connection"] == "close"
            deep = c.post(path, content=b"[" * 60_000)
            assert deep.status_code == 400, path
        assert c.post("/admin/bundle", json={"bundle": 7}).status_code == 400
        assert c.get("/healthz").json()["status"] == "ok"


def test_api_docs_are_off_and_the_schema_stays_behind_the_token(
    edge_config: Any, daemon_factory: Any
):
    """FastAPI's /docs and /redoc load Swagger UI and ReDoc from a CDN, on the device's origin:
    they are not served; the schema is docs/openapi.json, and /openapi.json wants the token."""
    d = daemon_factory(edge_config(http__token="s3cret"))
    with client(d) as anon, client(d, Authorization="Bearer s3cret") as ok:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert ok.get(path).status_code == 404, path
        assert anon.get("/openapi.json").status_code == 401
        assert "/session" in ok.get("/openapi.json").json()["paths"]


def test_every_image_answer_is_nosniff_and_private(quiet_daemon: Any, chest_images: dict[str, Any]):
    """A browser never guesses an image answer's type from its bytes, and no shared cache
    keeps a copy: the original, thumbnail, mask, attention and match PNGs alike."""
    d = quiet_daemon
    phantom = next(iter(sorted(chest_images["root"].glob("*.png"))))
    (Path(d.cfg.capture.folder.path) / "a.png").write_bytes(phantom.read_bytes())
    wait_until(lambda: d.indexes.keyword.num_docs == 1, 30, "indexed")
    rid = next(d.store.iter_analysed()).id
    paths = [
        f"/images/{rid}",
        f"/images/{rid}/thumb",
        f"/images/{rid}/mask",
        f"/images/{rid}/attention?word=0",
        f"/images/{rid}/match?q=heart&word=0",
    ]
    with client(d) as c:
        for path in paths:
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("image/"), path
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["cache-control"] == "private", path

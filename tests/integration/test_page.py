"""The search page in a real browser: Playwright drives Debian's Chromium against a
real daemon (shipped chest bundle, generated phantoms) on 127.0.0.1. Screenshots of the main
states go to the test's output folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.common import wait_until

from edge.config import parse_config
from edge.daemon import Daemon

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
N = 16
HEAT_DRAWN = """(sel) => { const c = document.querySelector(sel);
  if (!c || !c.width) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
  return false; }"""


def start(tmp: Path, chest_small: Path, n: int, **http: Any) -> Daemon:
    (tmp / "inbox").mkdir(parents=True)
    cfg = parse_config(
        {
            "device_id": "page",
            "data_dir": str(tmp / "data"),
            "model": {"bundle": "chest-int8", "catch_all": "", "accelerator": "cpu", "workers": 1},
            "capture": {
                "folder": {"path": str(tmp / "inbox"), "settle_s": 0.05, "poll_interval_s": 0.1}
            },
            "index": {"commit_every": 8, "commit_interval_s": 0.2},
            "http": {"port": 0, **http},
        },
        "test",
    )
    d = Daemon(cfg)
    d.start()
    for p in sorted((chest_small / "images").iterdir())[:n]:
        shutil.copy(p, tmp / "inbox" / p.name)
    wait_until(
        lambda: d.indexes.keyword.num_docs == n and not d.store.count_due("index"), 120, "indexed"
    )
    return d


@pytest.fixture(scope="module")
def daemon(chest_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start(tmp_path_factory.mktemp("page"), chest_small, N)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/system-deps.sh installs it)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh page; fails the test on any console error or uncaught exception."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert errors == [], errors


def url(d: Daemon, path: str = "/") -> str:
    return f"http://127.0.0.1:{d.port}{path}"


def test_pneumonia_results_carry_the_query_words_heat_map(
    daemon: Daemon, page: Any, tmp_path: Path
) -> None:
    page.goto(url(daemon, "/?q=pneumonia"))
    page.wait_for_selector(".card .query-words .word")
    assert page.input_value("#q") == "pneumonia" and page.input_value("#mode") == "hybrid"
    page.wait_for_function(HEAT_DRAWN, arg=".card canvas.heat", timeout=10_000)
    first = page.locator(".card").first
    assert "pneumonia" in first.locator(".caption").inner_text()
    assert first.locator("mark").first.inner_text() == "pneumonia"
    assert "found by" in first.locator(".why").inner_text()
    assert first.locator("img").get_attribute("alt") == first.locator(".caption").inner_text()
    page.screenshot(path=str(tmp_path / "search.png"))


def test_facets_narrow_the_results_and_live_in_the_url(daemon: Daemon, page: Any) -> None:
    page.goto(url(daemon, "/?q=heart&mode=keyword"))
    page.wait_for_selector(".card")
    before = page.locator(".card").count()
    page.locator(".facet button", has_text="normal").click()
    page.wait_for_url("**label=normal**")
    page.wait_for_function(f"() => document.querySelectorAll('.card').length < {before}")
    for chips in page.locator(".card .chips").all_inner_texts():
        assert "normal" in chips.split()
    page.reload()
    page.wait_for_selector(".card")
    assert page.locator(".facet button[aria-pressed=true]").inner_text().startswith("normal")


def test_the_detail_view_shows_attention_mask_and_similar_images(
    daemon: Daemon, page: Any, tmp_path: Path
) -> None:
    page.goto(url(daemon, "/?q=enlarged+heart"))
    page.wait_for_selector(".card a.open")
    page.locator(".card a.open").first.click()
    # the caption words, the query words and the similar images load concurrently
    page.wait_for_selector("#detail[open] #similar img")
    page.wait_for_selector("#caption-words .word")
    assert "image=" in page.url
    assert page.locator("#caption-words .word").count() >= 2
    page.locator("#query-words .word").first.hover()
    page.wait_for_function(HEAT_DRAWN, arg="#overlay")
    assert page.is_hidden("#mask")
    page.check("#show-mask")
    page.wait_for_function(
        "() => document.querySelector('#mask').naturalWidth > 0 && "
        "!document.querySelector('#mask').hidden"
    )
    assert page.locator("#legend li").count() >= 1
    assert page.locator("#similar img").count() >= 1
    assert page.locator("#raw").get_attribute("href").startswith("/records/")
    page.screenshot(path=str(tmp_path / "detail.png"))
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.querySelector('#detail').open")
    # the dialog's `close` event, which drops the image from the URL, comes a task later
    page.wait_for_function("() => !location.search.includes('image=')")


def test_an_upload_and_an_inbox_image_appear_in_the_latest_view(
    daemon: Daemon, page: Any, chest_small: Path, tmp_path: Path
) -> None:
    page.goto(url(daemon, "/?view=latest"))
    page.wait_for_selector("#latest .card")
    known = set(page.eval_on_selector_all("#latest .card", "cs => cs.map(c => c.dataset.id)"))
    images = sorted((chest_small / "images").iterdir())
    page.set_input_files("#file", str(images[N]))
    page.wait_for_function(
        f"() => document.querySelectorAll('#latest .card').length > {len(known)}", timeout=30_000
    )
    shutil.copy(images[N + 1], Path(daemon.cfg.capture.folder.path) / "dropped.png")
    page.wait_for_function(
        f"() => document.querySelectorAll('#latest .card').length > {len(known) + 1}",
        timeout=30_000,
    )
    now = set(page.eval_on_selector_all("#latest .card", "cs => cs.map(c => c.dataset.id)"))
    assert len(now - known) == 2
    page.screenshot(path=str(tmp_path / "latest.png"))


def test_a_hostile_file_name_shows_as_text(daemon: Daemon, page: Any, chest_small: Path) -> None:
    name = '<img src=x onerror="window.__xss=1">.png'
    page.goto(url(daemon, "/"))
    data = (sorted((chest_small / "images").iterdir())[N + 2]).read_bytes()
    rid = page.evaluate(
        """async ([name, bytes]) => { const r = await fetch('/images', { method: 'POST',
             headers: {'Content-Type': 'image/png', 'X-S3E-Request': '1',
                       'X-Filename': encodeURIComponent(name)},
             body: new Uint8Array(bytes) }); return (await r.json()).id; }""",
        [name, list(data)],
    )
    wait_until(lambda: daemon.store.get(rid).status == "analysed", 30, "analysed")
    page.goto(url(daemon, f"/?image={rid}"))
    page.wait_for_selector("#detail[open] #facts dd")
    assert name in page.locator("#facts").inner_text()
    assert page.evaluate("() => window.__xss") is None
    assert page.locator("img[src='x']").count() == 0


def test_with_a_token_the_page_asks_once_and_everything_works(
    browser: Any, chest_small: Path, tmp_path: Path
) -> None:
    """With a token set, a page load makes no request that fails (Chromium logs a failed
    request as a console error): the page asks `/session` first, then for the token; once
    signed in, a reload goes straight to the results. The only failing request is the wrong
    token typed on purpose."""
    d = start(tmp_path, chest_small, 4, token="sekrit-token-123")
    try:
        context = browser.new_context()
        pg = context.new_page()
        errors: list[str] = []
        failed_requests: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("response", lambda r: failed_requests.append(r.url) if r.status >= 400 else None)
        pg.goto(url(d, "/?q=heart"))
        pg.wait_for_selector("#login[open]")
        pg.wait_for_load_state("networkidle")
        assert errors == [] and failed_requests == []
        pg.fill("#token", "wrong")
        pg.click("#login-form button")
        pg.wait_for_selector("#login-error:has-text('refused')")
        pg.fill("#token", "sekrit-token-123")
        pg.click("#login-form button")
        pg.wait_for_selector(".card img")
        pg.wait_for_function(
            "() => [...document.querySelectorAll('.card img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        assert "sekrit" not in pg.url and "sekrit" not in pg.evaluate("() => document.cookie")
        cookie = next(c for c in context.cookies() if c["name"] == "s3e_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert failed_requests == [url(d, "/login")]  # the wrong token, and nothing else
        wait_until(lambda: len(errors) == 1, 10, "the wrong token's console line")
        errors.clear()
        failed_requests.clear()
        pg.reload()
        pg.wait_for_selector(".card img")
        pg.wait_for_load_state("networkidle")
        assert not pg.is_visible("#login")
        assert errors == [] and failed_requests == []
        context.close()
    finally:
        d.stop()


def test_readable_at_phone_width(daemon: Daemon, browser: Any, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    pg = context.new_page()
    pg.goto(url(daemon, "/?q=pleural+effusion"))
    pg.wait_for_selector(".card")
    assert pg.evaluate("() => document.documentElement.scrollWidth") <= 390
    pg.keyboard.press("/")
    assert pg.evaluate("() => document.activeElement.id") == "q"
    pg.screenshot(path=str(tmp_path / "phone.png"))
    context.close()


def _upload(page: Any, name: str, data: bytes, media: str) -> str:
    rid: str = page.evaluate(
        """async ([name, bytes, media]) => { const r = await fetch('/images', { method: 'POST',
             headers: {'Content-Type': media, 'X-S3E-Request': '1', 'X-Filename': name},
             body: new Uint8Array(bytes) }); return (await r.json()).id; }""",
        [name, list(data), media],
    )
    return rid


def _analysed(daemon: Daemon, rid: str) -> bool:
    rec = daemon.store.get(rid)
    return rec is not None and rec.status == "analysed" and not daemon.store.count_due("index")


def _upload_and_open(daemon: Daemon, page: Any, name: str, data: bytes, media: str) -> str:
    """Upload from the page, wait until the image is analysed and indexed, open its detail
    view; its id."""
    page.goto(url(daemon, "/"))
    rid = _upload(page, name, data, media)
    wait_until(lambda: _analysed(daemon, rid), 60, f"{name} analysed")
    page.goto(url(daemon, f"/?image={rid}"))
    return rid


def test_a_photo_is_said_to_be_beyond_the_models(daemon: Daemon, page: Any, tmp_path: Path) -> None:
    import io

    from PIL import Image

    skimage_data = pytest.importorskip("skimage.data")
    buf = io.BytesIO()
    Image.fromarray(skimage_data.chelsea()).save(buf, "JPEG")
    _upload_and_open(daemon, page, "chelsea.jpg", buf.getvalue(), "image/jpeg")
    page.wait_for_selector("#ood:not([hidden])")
    text = page.inner_text("#ood")
    assert "do not cover this image" in text and "chest" in text
    page.screenshot(path=str(tmp_path / "out-of-domain.png"))


def test_a_dicom_shows_as_an_image_with_its_attributes_and_filters(
    daemon: Daemon, page: Any, chest_small: Path, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image
    from support import dicom_files as df

    pixels = np.asarray(Image.open(sorted((chest_small / "images").iterdir())[N + 3]).convert("L"))
    data = df.write(
        pixels.astype(np.uint16) * 16,
        bits_stored=12,
        identity=False,
        Manufacturer="Acme Medical",
        StudyDate="20230517",
    )
    rid = _upload_and_open(daemon, page, "chest.dcm", data, "application/dicom")
    page.wait_for_function("() => document.querySelector('#original').naturalWidth > 0")
    facts = page.inner_text("#facts")
    assert "DICOM modality" in facts and "DX" in facts and "CHEST" in facts
    page.screenshot(path=str(tmp_path / "dicom.png"))
    page.goto(url(daemon, "/?modality=dx"))
    page.wait_for_selector("#results .card")
    ids = page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.id)")
    assert ids == [rid] and page.input_value("#modality") == "dx"
    page.goto(
        url(daemon, "/?manufacturer=acme+medical&study_since=2023-05-01&study_until=2023-05-17")
    )
    page.wait_for_selector("#results .card")
    ids = page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.id)")
    assert ids == [rid] and page.input_value("#study_since") == "2023-05-01"
    for other in ("study_since=2023-05-18", "study_until=20230516", "manufacturer=acme"):
        got = page.request.get(url(daemon, f"/search?mode=keyword&{other}")).json()["results"]
        assert rid not in [r["id"] for r in got], other

"""The daemon in-process on real parts: TFLite interpreters on the shipped bundle, a Tantivy
index, SQLite, a watched folder and the HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from support.common import wait_until
from support.records import accept_pending


def client(d: Any, token: str = "") -> httpx.Client:
    """A non-browser client: uploads carry the header that a cross-site form cannot."""
    headers = {"X-S3E-Request": "1", **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.Client(base_url=f"http://127.0.0.1:{d.port}", headers=headers, timeout=30)


def indexed(d: Any, n: int) -> bool:
    return d.indexes.keyword.num_docs >= n and d.store.counts().get("due_index", 1) == 0


def with_finding(chest_images: dict[str, Any], kind: str, n: int) -> list[Path]:
    names = [
        name
        for name, m in sorted(chest_images["meta"]["images"].items())
        if any(f["type"] == kind for f in m["findings"])
    ]
    return [chest_images["root"].parent / name for name in names[:n]]


@pytest.fixture
def busy_daemon(edge_config: Any, daemon_factory: Any, chest_images: dict[str, Any]) -> Any:
    """A daemon that found 12 images in its folder at start, all analysed and indexed."""
    cfg = edge_config()
    inbox = Path(cfg.capture.folder.path)
    inbox.mkdir(parents=True)
    for p in sorted(chest_images["root"].glob("*.png"))[:12]:
        shutil.copy(p, inbox / p.name)
    d = daemon_factory(cfg)
    wait_until(lambda: indexed(d, 12), 60, "12 images indexed")
    return d


def test_folder_images_present_at_start_are_analysed_indexed_and_removed(busy_daemon: Any):
    d = busy_daemon
    assert list(Path(d.cfg.capture.folder.path).iterdir()) == []
    counts = d.store.counts()
    assert counts["analysed"] == 12 and "pending" not in counts
    rec = d.store.iter_analysed().__next__()
    cap = rec.analysis["caption"]
    assert cap["text"] and cap["words"] and rec.precision == "int8" and rec.revision == 1
    assert rec.bundle == d.bundle.version and rec.bundle.startswith("chest-int8@")
    assert set(rec.timings) >= {
        "decode_ms",
        "preprocess_ms",
        "caption_ms",
        "segmentation_ms",
        "vae_ms",
    }
    assert rec.accelerators["captioner_step"] == "cpu"
    original = d.store.original_path(rec.id, rec.ext).read_bytes()
    assert hashlib.sha256(original).hexdigest() == rec.id


def test_search_for_a_finding_returns_the_images_whose_captions_say_so(
    edge_config: Any, daemon_factory: Any, chest_images: dict[str, Any]
):
    d = daemon_factory(edge_config())
    inbox = Path(d.cfg.capture.folder.path)
    pneumonia = with_finding(chest_images, "consolidation", 4)
    others = with_finding(chest_images, "cardiomegaly", 4)
    assert len(pneumonia) == 4
    for p in pneumonia + others:
        shutil.copy(p, inbox / p.name)
    wait_until(lambda: indexed(d, 8), 60, "8 images indexed")
    with client(d) as c:
        body = c.get("/search", params={"q": "pneumonia"}).json()
    ids = {r["id"] for r in body["results"]}
    truth = {hashlib.sha256(p.read_bytes()).hexdigest() for p in pneumonia}
    assert len(ids & truth) >= 3
    for r in body["results"]:
        assert "<b>pneumonia</b>" in r["snippet"]
        assert r["thumbnail_url"] == f"/images/{r['id']}/thumb"
    assert body["total"] == len(body["results"])
    assert body["facets"]["labels"]["opacity"] >= 3


def test_search_filters_label_anomaly_time_source_and_paging(busy_daemon: Any):
    with client(busy_daemon) as c:
        everything = c.get("/search", params={"limit": 100}).json()
        assert everything["total"] == 12
        facets = everything["facets"]["labels"]
        label = next(iter(facets))
        only = c.get("/search", params={"label": label}).json()
        assert only["total"] == facets[label]
        assert all(label in r["labels"] for r in only["results"])
        high = c.get("/search", params={"min_anomaly": 1.0, "limit": 100}).json()
        assert all(r["anomaly"] >= 1.0 for r in high["results"])
        assert high["total"] == sum(r["anomaly"] >= 1.0 for r in everything["results"])
        assert c.get("/search", params={"since": "2999-01-01"}).json()["total"] == 0
        assert c.get("/search", params={"until": "2999-01-01"}).json()["total"] == 12
        assert c.get("/search", params={"source": "upload"}).json()["total"] == 0
        page = c.get("/search", params={"limit": 5, "offset": 10}).json()
        assert len(page["results"]) == 2


def test_query_syntax_error_is_a_400_that_says_where(busy_daemon: Any):
    with client(busy_daemon) as c:
        r = c.get("/search", params={"q": "caption:(pneumonia"})
        assert r.status_code == 400
        assert "position" in r.json()["detail"]
        assert c.get("/search", params={"q": "nosuchfield:x"}).status_code == 400
        assert c.get("/search", params={"since": "yesterday"}).status_code == 400


def test_image_routes_serve_original_thumbnail_mask_attention_and_similar(busy_daemon: Any):
    d = busy_daemon
    rec = next(d.store.iter_analysed())
    with client(d) as c:
        orig = c.get(f"/images/{rec.id}")
        assert orig.status_code == 200 and hashlib.sha256(orig.content).hexdigest() == rec.id
        thumb = Image.open(io.BytesIO(c.get(f"/images/{rec.id}/thumb").content))
        assert thumb.format == "JPEG"
        mask = Image.open(io.BytesIO(c.get(f"/images/{rec.id}/mask").content))
        assert mask.mode == "P" and mask.size == (64, 64)
        assert set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3}
        att = c.get(f"/images/{rec.id}/attention", params={"word": 0})
        assert (
            att.status_code == 200 and att.headers["x-word"] == rec.analysis["caption"]["words"][0]
        )
        assert Image.open(io.BytesIO(att.content)).size == thumb.size
        by_word = c.get(
            f"/images/{rec.id}/attention", params={"word": rec.analysis["caption"]["words"][-1]}
        )
        assert by_word.headers["x-word"] == rec.analysis["caption"]["words"][-1]
        assert c.get(f"/images/{rec.id}/attention", params={"word": 99}).status_code == 404
        sim = c.get(f"/images/{rec.id}/similar", params={"k": 5}).json()["similar"]
        assert len(sim) == 5 and rec.id not in {s["id"] for s in sim}
        assert [s["distance"] for s in sim] == sorted(s["distance"] for s in sim)
        assert c.get("/images/" + "0" * 64).status_code == 404
        assert c.get(f"/records/{rec.id}").json()["caption"] == rec.analysis["caption"]["text"]


def test_upload_raw_and_multipart_and_the_same_image_twice_is_stored_once(
    edge_config: Any, daemon_factory: Any, chest_images: dict[str, Any]
):
    d = daemon_factory(edge_config(capture__folder__enabled=False))
    a, b = sorted(chest_images["root"].glob("*.png"))[:2]
    with client(d) as c:
        r1 = c.post(
            "/images",
            content=a.read_bytes(),
            headers={"X-Filename": a.name, "Content-Type": "image/png"},
        )
        assert r1.status_code == 201 and r1.json()["duplicate"] is False
        r2 = c.post("/images", files={"file": (b.name, b.read_bytes(), "image/png")})
        assert r2.status_code == 201
        again = c.post("/images", files={"file": ("copy.png", a.read_bytes(), "image/png")})
        assert again.status_code == 200 and again.json() == {**r1.json(), "duplicate": True}
        assert r1.json()["id"] == hashlib.sha256(a.read_bytes()).hexdigest()
        wait_until(lambda: indexed(d, 2), 30, "2 uploads indexed")
        assert c.get("/search", params={"source": "upload"}).json()["total"] == 2
        bad = c.post("/images", content=b"hello, not an image")
        assert bad.status_code == 400 and "not_an_image" in bad.json()["detail"]
    assert d.store.counts()["analysed"] == 2
    assert 'kind="not_an_image"' in d.metrics.render().decode()
    assert "s3e_images_duplicate_total 1.0" in d.metrics.render().decode()


def test_upload_over_the_size_limit_is_a_413(
    edge_config: Any, daemon_factory: Any, chest_images: dict[str, Any]
):
    d = daemon_factory(edge_config(capture__upload__max_bytes=1000))
    data = next(iter(sorted(chest_images["root"].glob("*.png")))).read_bytes()
    assert len(data) > 1000
    big = data + bytes(200_000)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    with client(d) as c:
        assert c.post("/images", content=data).status_code == 413
        early = c.post("/images", content=chunked())
        assert early.status_code == 413
        assert early.headers["connection"] == "close", "the rest of the body is not a request"
        files = {"file": ("a.png", data, "image/png")}
        assert c.post("/images", files=files).status_code == 413
    assert d.store.counts().get("analysed", 0) == 0


def test_bearer_token_protects_every_route_but_healthz(edge_config: Any, daemon_factory: Any):
    d = daemon_factory(edge_config(http__token="s3cret"))
    with client(d) as anon:
        assert anon.get("/healthz").status_code == 200
        for path in ("/search", "/metrics", "/openapi.json", "/docs", "/images/x/thumb"):
            assert anon.get(path).status_code == 401, path
        assert anon.post("/images", content=b"x").status_code == 401
    with client(d, "wrong") as bad:
        assert bad.get("/search").status_code == 401
    with client(d, "s3cret") as ok:
        assert ok.get("/search").status_code == 200


def test_healthz_and_metrics_report_placement_counts_and_latency(busy_daemon: Any):
    with client(busy_daemon) as c:
        h = c.get("/healthz").json()
        text = c.get("/metrics").text
    assert h["status"] == "ok" and h["runtime"] == "ai_edge_litert"
    assert set(h["accelerator"]["models"].values()) == {"cpu"}
    assert h["records"]["analysed"] == 12 and h["index_documents"] == 12
    assert "s3e_images_processed_total 12.0" in text
    assert 's3e_stage_seconds_count{stage="caption"} 12.0' in text
    assert "s3e_queue_analysis 0.0" in text and "s3e_index_documents 12.0" in text
    assert 's3e_images_accepted_total{source="folder"} 12.0' in text


def test_reindex_rebuilds_the_same_search_results(busy_daemon: Any):
    d = busy_daemon

    def times_indexed() -> float:
        return d.metrics.value("s3e_records_indexed_total")

    assert times_indexed() == 12
    with client(d) as c:
        before = c.get("/search", params={"limit": 100}).json()
        d.commands()["reindex"]({})
        wait_until(lambda: times_indexed() == 24 and indexed(d, 12), 30, "every record again")
        after = c.get("/search", params={"limit": 100}).json()
    assert {r["id"] for r in before["results"]} == {r["id"] for r in after["results"]}
    assert d.indexes.keyword.num_docs == 12


def test_restart_keeps_everything_and_analyses_nothing_twice(
    edge_config: Any, daemon_factory: Any, busy_daemon: Any
):
    cfg = busy_daemon.cfg
    busy_daemon.stop()
    d = daemon_factory(cfg)
    # time enough to redo anything it thought due: the analysis has read the store for
    # images to analyse, and the index's worker has drained what is due, after the start
    polls, rounds = d.pool.polls, d.part("index").worker.rounds
    wait_until(
        lambda: d.pool.polls >= polls + 2 and d.part("index").worker.rounds >= rounds + 2,
        30,
        "the analysis and the index come round",
    )
    assert d.store.counts() == {"analysed": 12, "due_index": 0}  # only the sinks it runs
    assert d.indexes.keyword.num_docs == 12
    text = d.metrics.render().decode()
    assert "s3e_images_processed_total 0.0" in text and "s3e_records_indexed_total 0.0" in text


def test_polling_alone_finds_new_files(
    edge_config: Any, daemon_factory: Any, chest_images: dict[str, Any]
):
    d = daemon_factory(edge_config(capture__folder__watch="poll"))
    assert d.sources[0].source.mode == "poll"
    img = sorted(chest_images["root"].glob("*.png"))[3]
    sub = Path(d.cfg.capture.folder.path) / "2026" / "11"
    sub.mkdir(parents=True)
    shutil.copy(img, sub / img.name)
    wait_until(lambda: indexed(d, 1), 20, "a file in a subfolder indexed by polling")
    assert next(d.store.iter_analysed()).source_name == f"2026/11/{img.name}"


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]):
    import json
    import logging

    from edge.logs import setup_logging

    setup_logging("json", "info")
    try:
        logging.getLogger("s3e.test").info("accepted %s from %s", "abc", "folder")
    finally:
        setup_logging("text", "warning")
        logging.getLogger().handlers.clear()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    obj = json.loads(line)
    assert obj["msg"] == "accepted abc from folder" and obj["level"] == "info"
    assert obj["logger"] == "s3e.test" and obj["ts"].endswith("Z")


def test_the_id_prefix_the_logs_print_works_in_the_api(busy_daemon: Any) -> None:
    d = busy_daemon
    rid = next(d.store.iter_analysed()).id
    twins = ("abcdef01" + "0" * 56, "abcdef01" + "1" * 56)
    accept_pending(d.store, twins)
    with client(d) as c:
        assert c.get(f"/records/{rid[:12]}").json()["id"] == rid
        assert c.get(f"/images/{rid[:8]}/thumb").content == c.get(f"/images/{rid}/thumb").content
        ambiguous = c.get("/records/abcdef01")
        assert ambiguous.status_code == 409 and "give more of it" in ambiguous.json()["detail"]
        assert c.get("/records/abcdef010").json()["id"] == twins[0]

"""Versioned analyses: a bundle swap on a running daemon re-analyses the older
records in the background while capture goes on, and every sink takes the new revision once:
the index replaces documents, MQTT publishes revised events, the S3 sidecars are rewritten
(originals are not sent again), neighbours are replaced. Bad bundles are refused; a kill -9
mid re-analysis loses nothing; an evicted original comes back from S3, or waits for it."""

from __future__ import annotations

import collections
import io
import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from support.common import ROOT, free_port, wait_until
from support.mqtt_broker import Broker, Collector
from support.processes import db_count, healthy, write_config
from support.s3_servers import FaultProxy, new_bucket, s3_section

from edge.analysis.bundle import load_bundle
from edge.store.schema import S3_ORIGINAL

OLD, NEW = "chest-int8", "chest-float16"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """320 distinct chest phantoms as PNG bytes."""
    from models.data.dataset import write_dataset

    root = write_dataset("chest", 320, 99, tmp_path_factory.mktemp("re") / "chest")
    out = []
    for p in sorted((root / "images").glob("*.png")):
        buf = io.BytesIO()
        Image.open(p).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def feed(d: Any, batch: list[bytes]) -> None:
    futures = [d.ingestor.submit(data, "test", f"{i}.png") for i, data in enumerate(batch)]
    for f in futures:
        f.result(60)


def settled(d: Any) -> bool:
    c = d.store.counts()
    return not c.get("pending") and all(v == 0 for k, v in c.items() if k.startswith("due_"))


def admin(d: Any, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{d.port}/admin/bundle", json=body, timeout=120)


def test_reanalysis_of_300_records_while_capturing_revises_every_sink_once(
    swift: Any, tmp_path: Path, edge_config: Any, daemon_factory: Any, images: list[bytes]
) -> None:
    bucket = new_bucket(swift)
    broker = Broker(tmp_path / "broker").start()
    try:
        sub = Collector(broker, "s3e/test-edge/events")
        cfg = edge_config(
            s3=s3_section(swift, bucket),
            mqtt__host="127.0.0.1",
            mqtt__port=broker.port,
            reanalysis__share=1.0,
            model__workers=2,
        )
        Path(cfg.capture.folder.path).mkdir(parents=True)
        d = daemon_factory(cfg)
        feed(d, images[:300])
        wait_until(lambda: settled(d) and d.store.counts()["analysed"] == 300, 240, "300 out")
        old = d.bundle.version
        r = admin(d, {"bundle": NEW})
        assert r.status_code == 200, r.text
        assert r.json()["previous"] == old and r.json()["reanalysis"]["total"] == 300
        new = load_bundle(NEW).version
        for i, data in enumerate(images[300:]):  # capture goes on meanwhile
            (Path(cfg.capture.folder.path) / f"new-{i}.png").write_bytes(data)
        wait_until(
            lambda: (
                d.pool.progress()["left"] == 0
                and settled(d)
                and d.store.counts()["analysed"] == 320
            ),
            300,
            "re-analysis done",
        )
        recs = list(d.store.iter_analysed())
        assert {r.bundle for r in recs} == {new}
        assert collections.Counter(r.revision for r in recs) == {2: 300, 1: 20}
        hits = httpx.get(f"http://127.0.0.1:{d.port}/search", params={"limit": 200}).json()
        assert hits["total"] == 320 and d.indexes.keyword.num_docs == 320
        wait_until(lambda: len(sub.payloads("/events")) >= 620, 60, "620 events")
        events = sub.payloads("/events")
        per = collections.Counter((e["id"], e["revision"]) for e in events)
        assert {k[0] for k in per} == {r.id for r in recs}
        assert all(n == 1 for n in per.values()), "one event per (id, revision)"
        revised = [e for e in events if e["revision"] == 2]
        assert len(revised) == 300 and {e["bundle"]["version"] for e in revised} == {new}
        s3 = swift.client()
        from cloud_sync.keys import sidecar_key

        for rec in recs[::40]:
            doc = json.loads(
                s3.get_object(Bucket=bucket, Key=sidecar_key("s3e", rec))["Body"].read()
            )
            assert doc["bundle"]["version"] == new and doc["revision"] == rec.revision
        assert all(d.store.has_mark(S3_ORIGINAL, r.id) for r in recs)
        sim = httpx.get(
            f"http://127.0.0.1:{d.port}/images/{recs[0].id}/similar", params={"k": 50}
        ).json()["similar"]
        assert len({s["id"] for s in sim}) == 50 and recs[0].id not in {s["id"] for s in sim}
        assert d.metrics.value("s3e_images_reanalysed_total") == 300
    finally:
        sub.close()
        broker.stop()


def test_bad_bundles_are_refused_and_the_running_one_stays(
    tmp_path: Path, edge_config: Any, daemon_factory: Any
) -> None:
    d = daemon_factory(edge_config(capture__folder__enabled=False))
    running = d.bundle.version
    tampered = tmp_path / "tampered"
    shutil.copytree(load_bundle(NEW).root, tampered)
    with open(tampered / "segmenter.tflite", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    unknown = tmp_path / "unknown-output"
    shutil.copytree(load_bundle(NEW).root, unknown)
    doc = json.loads((unknown / "bundle.json").read_text())
    doc["outputs"]["telepathy"] = {"models": ["segmenter"]}
    (unknown / "bundle.json").write_text(json.dumps(doc))
    for body, why in (
        ({"bundle": str(tampered)}, "sha256 mismatch"),
        ({"bundle": str(unknown)}, "not known to this device"),
        ({"bundle": "no-such-bundle"}, "not a bundle folder"),
        ({"bundle": OLD}, "is a bundle running now"),
        ({}, "send"),
    ):
        r = admin(d, body)
        assert r.status_code == 400 and why in r.json()["detail"], (body, r.text)
    assert d.bundle.version == running and d.health()["bundle"]["version"] == running


def test_a_swap_during_a_swap_is_a_409(edge_config: Any, daemon_factory: Any) -> None:
    d = daemon_factory(edge_config(capture__folder__enabled=False))
    first: dict[str, Any] = {}
    t = threading.Thread(target=lambda: first.update(r=admin(d, {"bundle": NEW})))
    t.start()
    wait_until(lambda: d.swapper.busy or "r" in first, 30, "the first swap under way")
    second = admin(d, {"bundle": NEW})
    t.join(120)
    assert first["r"].status_code == 200
    assert second.status_code in (409, 400)  # 400 when the first was already done
    if second.status_code == 400:
        pytest.skip("the first swap ended before the second arrived")
    assert "in progress" in second.json()["detail"]


def test_the_bundle_command_over_mqtt(tmp_path: Path, edge_config: Any, daemon_factory: Any):
    broker = Broker(tmp_path / "broker").start()
    try:
        d = daemon_factory(
            edge_config(
                mqtt__host="127.0.0.1", mqtt__port=broker.port, capture__folder__enabled=False
            )
        )
        sub = Collector(broker, "s3e/test-edge/cmd/result")
        wait_until(lambda: d.part("mqtt").link.connected.is_set() and sub.client.is_connected(), 10)
        sub.client.publish("s3e/test-edge/cmd/bundle", '{"bundle": "nope", "request_id": 1}', qos=1)
        sub.client.publish(
            "s3e/test-edge/cmd/bundle", json.dumps({"bundle": NEW, "request_id": 2}), qos=1
        )
        wait_until(lambda: len(sub.payloads("/result")) == 2, 120, "two answers")
        bad, good = sorted(sub.payloads("/result"), key=lambda r: r["request_id"])
        assert not bad["ok"] and "not a bundle folder" in bad["error"]
        assert good["ok"] and good["bundle"] == load_bundle(NEW).version
        assert d.bundle.version == load_bundle(NEW).version
        sub.close()
    finally:
        broker.stop()


def test_kill_9_mid_reanalysis_then_restart_finishes_and_analyses_nothing_twice(
    tmp_path: Path, images: list[bytes]
) -> None:
    port = free_port()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i, data in enumerate(images[:80]):
        (inbox / f"{i:03d}.png").write_bytes(data)
    first = write_config(tmp_path, port)
    log = tmp_path / "log.txt"

    def run(config: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    proc = run(first)
    wait_until(lambda: db_count(tmp_path / "data", "status='analysed'") == 80, 120, "80 in")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    second = tmp_path / "second.toml"
    second.write_text(
        first.read_text().replace("[model]", f'[model]\nbundle = "{NEW}"')
        + "\n[reanalysis]\nshare = 1.0\n"
    )
    new = load_bundle(NEW).version
    proc = run(second)
    try:
        wait_until(lambda: db_count(tmp_path / "data", f"bundle='{new}'") >= 15, 120, "15 done")
    finally:
        proc.kill()
        proc.wait(10)
    done = db_count(tmp_path / "data", f"bundle='{new}'")
    assert done < 80, "the kill came too late to test anything"
    proc = run(second)
    try:
        wait_until(lambda: healthy(port), 60, "up again")
        wait_until(lambda: db_count(tmp_path / "data", f"bundle='{new}'") == 80, 120, "all 80")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert db_count(tmp_path / "data", "revision=2") == 80, "each record once per bundle"


def test_an_evicted_original_comes_back_from_s3_and_waits_while_s3_is_down(
    swift: Any, tmp_path: Path, edge_config: Any, daemon_factory: Any, images: list[bytes]
) -> None:
    proxy = FaultProxy(swift.endpoint).start()
    bucket = new_bucket(swift)
    cfg = edge_config(
        s3=s3_section(swift, bucket, proxy.endpoint, local_quota_mb=0.00001),
        reanalysis__share=1.0,
        capture__folder__enabled=False,
    )
    d = daemon_factory(cfg)
    feed(d, images[:6])
    wait_until(lambda: settled(d) and d.store.local_bytes() == 0, 60, "synced and evicted")
    proxy.fault("down")
    assert admin(d, {"bundle": NEW}).status_code == 200
    wait_until(lambda: d.pool.progress()["done"] == 0 and d.pool.waiting, 60, "waiting")
    assert d.store.counts().get("failed", 0) == 0 and d.pool.progress()["left"] == 6
    proxy.fault("none")
    wait_until(lambda: d.pool.progress()["left"] == 0, 120, "re-analysed from S3")
    assert {r.bundle for r in d.store.iter_analysed()} == {load_bundle(NEW).version}
    assert d.store.local_bytes() == 0, "a fetched original is not kept"
    proxy.stop()


def test_a_changed_index_schema_rebuilds_the_index_at_start(
    edge_config: Any, daemon_factory: Any, images: list[bytes]
) -> None:
    cfg = edge_config(capture__folder__enabled=False)
    d = daemon_factory(cfg)
    feed(d, images[:12])
    wait_until(lambda: settled(d) and d.indexes.keyword.num_docs == 12, 60, "12 indexed")
    d.stop()
    (Path(cfg.data_dir) / "index" / "schema.json").write_text('{"version": 1}')
    d = daemon_factory(cfg)
    assert d.indexes.keyword.rebuilt
    wait_until(
        lambda: d.indexes.keyword.num_docs == 12 and settled(d), 60, "rebuilt from the store"
    )

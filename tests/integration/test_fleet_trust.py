"""What the fleet believes, on real parts: mosquitto with the password and ACL files that
`s3e-fleet device add` writes, moto's S3 server, the fleet's ingest worker and reconciler, a
real `s3e-edge` daemon logged in as itself.

A device publishes and reads only under its own name; the fleet takes the device from the
topic (or, for a sidecar, from its S3 key), rebuilds the S3 keys, refuses revisions no device
can have reached, and presigns only an image's own keys. A forged event (a device posing as
another, a foreign key, a huge revision) leaves the archive as it was. A filter value never
becomes query text."""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lancedb.expr import col, lit
from support.common import ROOT, wait_until
from support.fleet_parts import (
    Workers,
    device,
    drop,
    event,
    fleet_cfg,
    rows,
    serve,
    sha,
    wait_rows,
)
from support.mqtt_broker import Broker
from support.mqtt_clients import Login
from support.s3_servers import new_bucket

from cloud_sync.client import make_client
from edge.analysis.bundle import load_bundle
from edge.search.engine import Filters, SearchRequest
from fleet.archive import Archive, vector_dims
from fleet.broker import add_device, ensure_acl, set_password
from fleet.config import FleetConfig
from fleet.reconcile import reconcile
from fleet.search import FleetSearch
from fleet.trust import REVISION_STEP, Refusals, object_key_ok

pytest.importorskip("lancedb")
FLEET = "s3e-fleet"
ALL = ["device", "id", "revision", "bundle", "original_key", "thumbnail_key", "record"]


@dataclass
class Secured:
    """The broker with logins only, and each user's password."""

    broker: Broker
    passwords: dict[str, str]
    root: Path

    def login(self, user: str) -> Login:
        return Login(self.broker, user, self.passwords[user])

    def fleet(self, moto: Any, bucket: str) -> FleetConfig:
        return fleet_cfg(self.broker, moto, bucket, FLEET, self.passwords[FLEET])


def fleet_cli(*argv: str) -> str:
    """`s3e-fleet` as an operator runs it; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """The fleet's user and one device made by the CLI, the other devices by the same code;
    an operator who sends commands, and Home Assistant reading the discovery configs."""
    root = tmp_path_factory.mktemp("secured")
    pw, acl = root / "mosquitto.passwd", root / "mosquitto.acl"
    files = ["--password-file", str(pw), "--acl-file", str(acl)]
    passwords = {FLEET: fleet_cli("device", "fleet", *files).strip()}
    secret = root / "ward-a.secret"
    fleet_cli("device", "add", "ward-a", *files, "--homeassistant", "--secret-file", str(secret))
    passwords["ward-a"] = secret.read_text().strip()
    for name in ("ward-b", "audit-01", "victim-02", "ward-f"):
        passwords[name] = add_device(name, pw, acl, "s3e", FLEET)
    for user, lines in {
        "operator": ["topic write s3e/+/cmd/#", "topic read s3e/+/cmd/result"],
        "homeassistant": ["topic read homeassistant/#"],
    }.items():
        passwords[user] = f"{user}-password"
        set_password(pw, user, passwords[user])
        ensure_acl(acl, {user: lines})
    b = Broker(root, password_file=pw, acl_file=acl, max_queued_messages=100_000).start()
    yield Secured(b, passwords, root)
    b.stop()


@pytest.fixture(scope="module")
def images(chest_small: Path) -> list[Path]:
    return sorted((chest_small / "images").iterdir())


def keys(cfg: FleetConfig) -> set[tuple[str, str]]:
    return {(r["device"], r["id"]) for r in rows(cfg)}


def test_each_device_publishes_and_reads_only_under_its_own_name(
    tmp_path: Path, secured: Secured, moto_server: Any, images: list[Path]
) -> None:
    assert "pattern write s3e/%u/#" in (secured.root / "mosquitto.acl").read_text()
    with pytest.raises(ConnectionRefusedError):
        Login(secured.broker, "ward-a", "not its password")
    bucket = new_bucket(moto_server)
    cfg = secured.fleet(moto_server, bucket)
    workers = Workers(cfg, 1)
    ha, operator, ward_b = (secured.login(u) for u in ("homeassistant", "operator", "ward-b"))
    for topic in ("s3e/ward-a/cmd/#", "s3e/+/events", "s3e/ward-b/cmd/#"):
        ward_b.subscribe(topic)  # granted by mosquitto 2.0; each delivery is checked
    ha.subscribe("homeassistant/#")
    operator.subscribe("s3e/+/cmd/result")
    secret = secured.root / "ward-a.secret"
    ward_a = device(
        tmp_path,
        "ward-a",
        secured.broker,
        moto_server,
        bucket,
        username="ward-a",
        password_file=str(secret),
        homeassistant=True,
    )
    try:
        drop(ward_a, images[:2])
        wait_until(lambda: len(keys(cfg)) == 2, 120, "ward-a's 2 events in the archive")
        wait_until(lambda: ha.received("homeassistant/sensor/s3e_ward-a/"), 30, "discovery")

        forged = event("ward-a", sha("forged by ward-b"), bucket)
        assert ward_b.publish("s3e/ward-a/events", forged) == "Not authorized"
        ha_topic = "homeassistant/sensor/s3e_ward-a/anomaly/config"
        assert ward_b.publish(ha_topic, b"{}") == "Not authorized"
        own = event("ward-b", sha("ward-b's own"), bucket)
        assert ward_b.publish("s3e/ward-b/events", own) == "Success"
        wait_until(lambda: ("ward-b", own["id"]) in keys(cfg), 60, "ward-b's own event")
        assert ("ward-a", forged["id"]) not in keys(cfg)
        assert {d for d, _ in keys(cfg)} == {"ward-a", "ward-b"}, "every device's events"
        assert workers.list[0].stats.wrong_device == 0, "the broker dropped the forgery"
        assert ward_b.disconnects == 0, "and kept ward-b's connection"

        assert operator.publish("s3e/ward-a/cmd/ping", {"request_id": "a"}) == "Success"
        wait_until(lambda: operator.received("s3e/ward-a/cmd/result"), 30, "ward-a's pong")
        assert operator.publish("s3e/ward-b/cmd/ping", {"request_id": "b"}) == "Success"
        wait_until(lambda: ward_b.received("s3e/ward-b/cmd/"), 30, "ward-b's own command")
        # what ward-b may not read came before its own command, if at all: it never came
        assert [t for t, _ in ward_b.received()] == ["s3e/ward-b/cmd/ping"]
    finally:
        workers.stop()
        ward_a.stop()
        for login in (ha, operator, ward_b):
            login.close()


def test_a_forged_event_leaves_the_archive_unchanged(
    tmp_path: Path, secured: Secured, moto_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = new_bucket(moto_server)
    make_client(secured.fleet(moto_server, bucket).s3).put_object(
        Bucket=bucket, Key="private/not-an-image.txt", Body=b"private text"
    )
    cfg = secured.fleet(moto_server, bucket)
    workers = Workers(cfg, 1)
    worker = workers.list[0]
    victim, audit = secured.login("victim-02"), secured.login("audit-01")
    search = FleetSearch(Archive.current(cfg), load_bundle("chest-int8"))

    def look(result_id: str, columns: list[str]) -> dict[str, Any] | None:
        search.archive.table.checkout_latest()  # what the workers wrote since
        return search.row(result_id, columns)

    try:
        v = event("victim-02", sha("the victim's image"), bucket)
        assert victim.publish("s3e/victim-02/events", v) == "Success"
        wait_rows(cfg, 1, 60)
        before = rows(cfg, ALL)
        own_key = before[0]["original_key"]
        assert own_key == v["urls"]["s3"].removeprefix(f"s3://{bucket}/")
        foreign = f"s3://{bucket}/private/not-an-image.txt"
        probe = {**v, "device": "victim-02", "revision": 999999, "urls": {"s3": foreign}}
        caplog.set_level(logging.WARNING, "s3e.fleet.ingest")
        for _ in range(20):
            assert audit.publish("s3e/audit-01/events", probe) == "Success"
        wait_until(lambda: worker.stats.wrong_device == 20, 60, "20 forgeries refused")
        assert rows(cfg, ALL) == before
        assert look(f"{v['id']}:audit-01", ["original_key"]) is None
        assert look(f"{v['id']}:victim-02", ["revision", "original_key"]) == {
            "revision": 1,
            "original_key": own_key,
        }
        refused = [r for r in caplog.records if r.getMessage().startswith("refused")]
        assert len(refused) == 1 and "another device" in refused[0].getMessage()

        # from its own name: no revision a device can have reached
        thumb = f"s3://{bucket}/private/x.thumb.jpg"
        mine = {**probe, "device": "audit-01", "urls": {"s3": foreign, "s3_thumbnail": thumb}}
        assert audit.publish("s3e/audit-01/events", mine) == "Success"
        first = {**mine, "revision": REVISION_STEP + 1}
        assert audit.publish("s3e/audit-01/events", first) == "Success"
        wait_until(lambda: worker.stats.revision_jump == 2, 60, "both revisions refused")
        assert rows(cfg, ALL) == before

        # within reach: a row of its own, the keys rebuilt under its own name
        assert audit.publish("s3e/audit-01/events", {**mine, "revision": 1}) == "Success"
        wait_rows(cfg, 2, 60)
        got = look(f"{v['id']}:audit-01", ["original_key", "thumbnail_key"])
        assert got == {
            "original_key": "",  # .txt: no extension a device gives
            "thumbnail_key": own_key.replace("victim-02", "audit-01").replace(".jpg", ".thumb.jpg"),
        }
        theirs = {**mine, "revision": 2, "urls": {"s3": f"s3://{bucket}/{own_key}"}}
        # the victim's own original named: the key is still audit-01's own
        assert audit.publish("s3e/audit-01/events", theirs) == "Success"
        wait_until(
            lambda: {r["revision"] for r in rows(cfg)} == {1, 2}, 60, "revision 2", every=0.5
        )
        got = look(f"{v['id']}:audit-01", ["original_key"])
        assert got == {"original_key": own_key.replace("victim-02", "audit-01")}
        assert [r for r in rows(cfg, ALL) if r["device"] == "victim-02"] == before
    finally:
        workers.stop()
        victim.close()
        audit.close()

    # a key that is not the row's own is never presigned, whoever wrote it into the table
    assert not object_key_ok("private/not-an-image.txt", "s3e", "victim-02", v["id"], False)
    archive = Archive.current(cfg)
    planted = archive.table.search().where(col("device") == lit("victim-02")).to_list()[0]
    archive.merge([{**planted, "original_key": "private/not-an-image.txt"}])
    search = FleetSearch(Archive.current(cfg), load_bundle("chest-int8"))
    assert search.row(f"{v['id']}:victim-02", ["original_key"]) == {"original_key": ""}
    server, client = serve(cfg, tmp_path)
    try:
        assert client.get(f"/images/{v['id']}:victim-02", follow_redirects=False).status_code == 404
        own = client.get(f"/images/{v['id']}:victim-02/thumb", follow_redirects=False)
        assert own.status_code == 307 and "/s3e/victim-02/" in own.headers["location"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)


def test_the_reconciler_holds_sidecars_to_the_same_rules(
    secured: Secured, moto_server: Any
) -> None:
    bucket = new_bucket(moto_server)
    cfg = secured.fleet(moto_server, bucket)
    s3 = make_client(cfg.s3)
    today = dt.datetime.now(dt.UTC).replace(microsecond=0)
    folder = f"s3e/audit-01/{today:%Y/%m/%d}"

    def sidecar(image: str, **change: Any) -> str:
        doc = {k: v for k, v in event("audit-01", image, bucket, captured_at=today).items()}
        doc.pop("urls")
        doc |= {"original": f"{image}.jpg", "thumbnail": f"{image}.thumb.jpg", **change}
        key = f"{folder}/{image}.json"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())
        return image

    spoof = sidecar(sha("spoof"), device="victim-02")
    jump = sidecar(sha("jump"), revision=999999)
    other = sidecar(sha("named after another"), id=sha("the other"))
    fine = sidecar(
        sha("fine"),
        original="../../../../private/not-an-image.jpg",
        thumbnail="../../../../private/x.thumb.jpg",
    )
    archive = Archive.current(cfg, vector_dims(load_bundle("chest-int8")))
    refusals = Refusals(logging.getLogger("test"))
    assert reconcile(archive, s3, bucket, cfg.s3.prefix, 2, refusals) == 1
    assert refusals.counts == {"wrong_device": 1, "revision_jump": 1, "invalid": 1}
    got = rows(cfg, ALL)
    assert [(r["device"], r["id"]) for r in got] == [("audit-01", fine)]
    assert got[0]["original_key"] == f"{folder}/{fine}.jpg"
    assert got[0]["thumbnail_key"] == f"{folder}/{fine}.thumb.jpg"
    assert {spoof, jump, other}.isdisjoint(r["id"] for r in got)


def test_filter_values_never_become_query_text(secured: Secured, moto_server: Any) -> None:
    bucket = new_bucket(moto_server)
    cfg = secured.fleet(moto_server, bucket)
    bundle = load_bundle("chest-int8")
    width = vector_dims(bundle)[1]
    workers = Workers(cfg, 1)
    ward_f = secured.login("ward-f")
    quoted, escaped = "x' OR 'a'='a", "\\' OR 1=1) --"
    made = {
        "effusion": event("ward-f", sha("f1"), bucket, latent=[0.1] * width),
        "nodule": event("ward-f", sha("f2"), bucket, labels=("nodule",), latent=[0.2] * width),
        quoted: event(
            "ward-f", sha("f3"), bucket, labels=("nodule",), bundle=quoted, latent=[0.3] * width
        ),
        escaped: event(
            "ward-f", sha("f4"), bucket, labels=("nodule",), bundle=escaped, latent=[0.4] * width
        ),
    }
    try:
        for doc in made.values():
            assert ward_f.publish("s3e/ward-f/events", doc) == "Success"
        wait_rows(cfg, 4, 60)
    finally:
        workers.stop()
        ward_f.close()
    search = FleetSearch(Archive.current(cfg), bundle)
    rid = {k: f"{d['id']}:ward-f" for k, d in made.items()}

    def found(limit: int = 20, **filters: Any) -> tuple[set[str], int]:
        req = SearchRequest(q="", filters=Filters(**filters), mode="keyword", limit=limit)
        res = search.search(req)
        return {h.id for h in res.hits}, res.total

    assert found(label="effusion") == ({rid["effusion"]}, 1)
    assert found(label="nodule", limit=1)[1] == 3, "counted with the label filter"
    assert found(source="folder", device="ward-f", limit=1)[1] == 4
    for value in (quoted, "effusion' OR 'a'='a", escaped, "effusion'", "it's"):
        for limit in (20, 0):  # 0: the total is counted (`count_rows`, a filter as text)
            assert found(limit, label=value) == (set(), 0), value
            assert found(limit, device=value) == (set(), 0), value
            assert found(limit, source=value) == (set(), 0), value
            assert found(limit, source=value, label="nodule") == (set(), 0), value
    similar = search.similar(rid["effusion"], 10)
    assert [s["id"] for s in similar or []] == [rid["nodule"]], "only its own bundle's rows"
    assert search.similar(rid[quoted], 10) == []
    assert search.similar(rid[escaped], 10) == []

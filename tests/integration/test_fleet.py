"""The fleet on real parts on 127.0.0.1: mosquitto, moto's S3 server (conditional
PUT) and two real `s3e-edge` daemons with their own device ids syncing to one bucket; the
archive is a LanceDB table in that bucket. Images dropped on each device become searchable
centrally with the right device; a broker outage is mended by the reconciler; a worker killed
mid-batch loses and duplicates nothing; two workers split the load; a revised event replaces
its row; a Ray re-analysis with another bundle revises every row once; Swift is refused with a
clear message."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.common import ROOT, wait_until
from support.fleet_parts import (
    Workers,
    device,
    drop,
    fleet_cfg,
    fleet_toml,
    rows,
    serve,
    synced,
    wait_rows,
)
from support.mqtt_broker import Broker
from support.s3_servers import new_bucket, s3_section

from cloud_sync.keys import original_key, thumbnail_key
from edge.analysis.bundle import load_bundle
from edge.config import ConfigError
from fleet.archive import Archive, ArchiveError, check_conditional_put, vector_dims
from fleet.config import FleetConfig
from fleet.config import parse_config as fleet_config
from fleet.reconcile import reconcile

pytest.importorskip("lancedb")
DEVICES = ("ward-a", "ward-b")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def images(chest_small: Path) -> list[Path]:
    return sorted((chest_small / "images").iterdir())


def test_two_devices_searchable_centrally_split_between_two_workers(
    tmp_path: Path, broker: Broker, moto_server: Any, images: list[Path]
) -> None:
    bucket = new_bucket(moto_server)
    cfg = fleet_cfg(broker, moto_server, bucket)
    check_conditional_put(cfg.s3, cfg.archive.uri)
    workers = Workers(cfg, 2)
    daemons = [device(tmp_path, name, broker, moto_server, bucket) for name in DEVICES]
    try:
        drop(daemons[0], images[:10])
        drop(daemons[1], images[10:20])
        wait_rows(cfg, 20, 120, workers=workers, daemons=daemons)
        got = rows(cfg)
        assert {(r["device"], r["id"]) for r in got} == {
            (d.cfg.device_id, r.id) for d in daemons for r in d.store.iter_analysed()
        }
        prefix = cfg.s3.prefix  # the keys the fleet rebuilds are those the devices wrote
        assert {(r["original_key"], r["thumbnail_key"]) for r in got} == {
            (original_key(prefix, r), thumbnail_key(prefix, r))
            for d in daemons
            for r in d.store.iter_analysed()
        }
        assert all(w.stats.events > 0 for w in workers.list), [w.stats for w in workers.list]
        wait_until(lambda: all(synced(d) for d in daemons), 60, "synced")
        server, client = serve(cfg, tmp_path)
        body = client.get("/search", params={"q": "pneumonia"}).json()
        assert body["results"] and body["mode"] == "hybrid"
        assert all("pneumonia" in h["caption"] or "semantic" in h["match"] for h in body["results"])
        only_b = client.get("/search", params={"q": "heart", "device": "ward-b"}).json()
        assert only_b["results"] and {h["device"] for h in only_b["results"]} == {"ward-b"}
        recent = client.get("/search", params={"q": "pneumonia", "sort": "recent"}).json()
        times = [h["captured_at"] for h in recent["results"]]
        assert recent["mode"] == "keyword" and times == sorted(times, reverse=True)
        assert recent["results"] and all("pneumonia" in h["caption"] for h in recent["results"])
        assert recent["total"] < 20, "the query still filters when sorted by date"
        first = body["results"][0]["id"]
        thumb = client.get(f"/images/{first}/thumb", follow_redirects=False)
        assert thumb.status_code == 307
        assert httpx.get(thumb.headers["location"]).content[:2] == b"\xff\xd8"
        match = client.get(f"/images/{first}/match", params={"q": "pneumonia"}).json()
        assert match["grid"] == 8 and len(match["words"][0]["map"]) == 64
        assert client.get(f"/records/{first}").json()["device"] in DEVICES
        assert client.get(f"/images/{first}/similar").json()["similar"]
        page = client.get("/")
        assert (
            page.status_code == 200
            and "img-src 'self' http://127.0.0.1" in page.headers["content-security-policy"]
        )
    finally:
        workers.stop()
        for d in daemons:
            d.stop()
        if "server" in locals():
            server.send_signal(signal.SIGTERM)
            server.wait(20)


def test_a_broker_outage_is_mended_by_the_reconciler(
    tmp_path: Path, broker: Broker, moto_server: Any, images: list[Path]
) -> None:
    bucket = new_bucket(moto_server)
    cfg = fleet_cfg(broker, moto_server, bucket)
    d = device(tmp_path, "ward-c", broker, moto_server, bucket)
    try:
        broker.stop()
        drop(d, images[20:26])
        wait_until(
            lambda: not d.store.counts().get("due_s3") and d.store.counts().get("analysed") == 6,
            120,
            "synced to S3",
        )
        cfg_archive = Archive.current(cfg, vector_dims(load_bundle("chest-int8")))
        from cloud_sync.client import make_client

        merged = reconcile(cfg_archive, make_client(cfg.s3), bucket, cfg.s3.prefix, 2)
        assert merged == 6 and len(rows(cfg)) == 6
        assert all(r["thumbnail_key"].endswith(".thumb.jpg") for r in rows(cfg))
        assert reconcile(cfg_archive, make_client(cfg.s3), bucket, cfg.s3.prefix, 2) == 0
    finally:
        broker.start()
        d.stop()


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(
    tmp_path: Path, broker: Broker, moto_server: Any, images: list[Path]
) -> None:
    bucket = new_bucket(moto_server)
    cfg = fleet_cfg(
        broker,
        moto_server,
        bucket,
        batch_events=1000,
        batch_seconds=600,
        client_id="fleet-kill-test",
    )
    toml = tmp_path / "fleet.toml"
    toml.write_text(fleet_toml(cfg))

    log = tmp_path / "worker.log"

    def worker(config: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "fleet.cli", "ingest", "--config", str(config)],
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )

    proc = worker(toml)
    d = device(tmp_path, "ward-d", broker, moto_server, bucket)
    try:
        wait_until(lambda: "subscribed to" in log.read_text(), 60, "the worker subscribed")
        drop(d, images[26:34])
        wait_until(
            lambda: not d.store.counts().get("due_mqtt") and d.store.counts().get("analysed") == 8,
            120,
            "8 published",
        )
        proc.send_signal(signal.SIGKILL)  # its batch (8 events, 600 s to go) is not committed
        proc.wait(10)
        assert not rows(cfg)
        short = tmp_path / "short.toml"
        short.write_text(fleet_toml(cfg).replace("batch_seconds = 600", "batch_seconds = 0.2"))
        proc = worker(short)
        wait_rows(cfg, 8, 60, daemons=[d])
        drop(d, images[34:36])
        wait_rows(cfg, 10, 60, daemons=[d])
        got = rows(cfg)
        assert len({(r["device"], r["id"]) for r in got}) == len(got) == 10
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        d.stop()


def test_a_revised_event_replaces_its_row_and_a_ray_reanalysis_revises_every_row(
    tmp_path: Path, broker: Broker, moto_server: Any, images: list[Path]
) -> None:
    bucket = new_bucket(moto_server)
    cfg = fleet_cfg(broker, moto_server, bucket)
    workers = Workers(cfg, 1)
    d = device(tmp_path, "ward-e", broker, moto_server, bucket)
    try:
        drop(d, images[36:42])
        wait_rows(cfg, 6, 120, workers=workers, daemons=[d])
        wait_until(lambda: synced(d), 60, "synced")
        d.swapper.swap("chest-float16")
        float16 = load_bundle("chest-float16").version
        wait_until(lambda: {r["revision"] for r in rows(cfg)} == {2}, 120, "revision 2", every=0.5)
        assert len(rows(cfg)) == 6 and {r["bundle"] for r in rows(cfg)} == {float16}
        wait_until(lambda: synced(d), 60, "synced")
    finally:
        workers.stop()
        d.stop()
    before = Archive.current(cfg).name
    done = reanalyze(cfg, "chest-int8", tmp_path)
    assert "'images': 6" in done and "'rows': 6" in done, done
    after = rows(cfg)  # the archive is the new table now
    assert Archive.current(cfg).name not in (before, None)
    assert {r["revision"] for r in after} == {3}
    assert {r["bundle"] for r in after} == {load_bundle("chest-int8").version}
    assert "'rows': 6" in reanalyze(cfg, "chest-float16", tmp_path)
    back = reanalyze(cfg, "chest-int8", tmp_path)  # into the int8 table of the first job
    assert "'images': 6" in back and "'rows': 6" in back, back
    assert {r["revision"] for r in rows(cfg)} == {5}


def reanalyze(cfg: FleetConfig, bundle: str, tmp: Path) -> str:
    """`s3e-fleet reanalyze` as an operator runs it (Ray in its own process); its log."""
    toml = tmp / "reanalyze.toml"
    toml.write_text(fleet_toml(cfg))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet.cli",
            "reanalyze",
            "--bundle",
            bundle,
            "--workers",
            "1",
            "--config",
            str(toml),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_swift_is_refused_with_the_reason_and_the_alternatives(swift: Any) -> None:
    bucket = new_bucket(swift)
    s3 = FleetConfig().s3.model_validate(s3_section(swift, bucket))
    with pytest.raises(ArchiveError, match=r"conditional PUT.*Swift"):
        check_conditional_put(s3, f"s3://{bucket}/fleet")


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"archive\.urii: unknown key"):
        fleet_config({"archive": {"urii": "s3://x/y"}}, "fleet.toml")
    with pytest.raises(ConfigError, match=r"http\.port"):
        fleet_config({"http": {"port": "eighty"}}, "fleet.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nbatch_events = 0\n")
    r = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "check-config", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "mqtt.batch_events" in r.stderr
    example = ROOT / "examples" / "fleet.toml"
    ok = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "check-config", "--config", str(example)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "ok" in ok.stdout, ok.stderr


def test_the_fleet_cli_refuses_swift_without_a_stack_trace(swift: Any, tmp_path: Path) -> None:
    bucket = new_bucket(swift)
    cfg = FleetConfig.model_validate(
        {"s3": s3_section(swift, bucket), "archive": {"uri": f"s3://{bucket}/fleet"}}
    )
    toml = tmp_path / "fleet.toml"
    toml.write_text(fleet_toml(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "maintain", "--config", str(toml)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "conditional PUT" in r.stderr, r.stderr

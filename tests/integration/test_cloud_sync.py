"""Cloud sync against real S3 servers on 127.0.0.1: OpenStack Swift with its S3 API (checks
signatures and Content-MD5, stores on disk, has no conditional PUT), moto's server for the
conditional PUT it does have, and a fault-injecting proxy of ours in front of either."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.common import ROOT, wait_until
from support.mqtt_broker import Broker, Collector
from support.records import fill_analysed as fill
from support.s3_servers import FaultProxy, new_bucket, s3_section

from cloud_sync.config import S3Config
from cloud_sync.keys import original_key, sidecar_key, thumbnail_key
from cloud_sync.retention import enforce_quota
from cloud_sync.service import SyncLockedError, SyncService, status
from edge.analysis import views
from edge.config import ConfigError, load_config, parse_config
from edge.metrics import Metrics
from edge.store.schema import S3_ORIGINAL
from edge.store.store import Store

DEVICE = "sync-edge"


def service(store: Store, server: Any, bucket: str, endpoint: str = "", **more: Any) -> Any:
    cfg = S3Config.model_validate(s3_section(server, bucket, endpoint, **more))
    return SyncService(cfg, store, Metrics())


def object_puts(proxy: FaultProxy, statuses: tuple[int, ...] = (200,)) -> int:
    """Single PUTs of originals the server stored (-200: stored, but the connection was cut
    before the client heard so)."""
    return sum(
        1
        for method, path, st in proxy.requests
        if method == "PUT"
        and path.split("?")[0].endswith(".jpg")
        and not path.split("?")[0].endswith(".thumb.jpg")
        and "uploadId" not in path
        and st in statuses
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "data", DEVICE)
    yield s
    s.close()


def test_daemon_syncs_verified_originals_with_sidecars_and_events_name_them(
    swift: Any,
    tmp_path: Path,
    edge_config: Any,
    daemon_factory: Any,
    chest_images: dict[str, Any],
) -> None:
    bucket = new_bucket(swift)
    broker = Broker(tmp_path / "broker").start()
    try:
        sub = Collector(broker, "s3e/test-edge/events")
        cfg = edge_config(
            s3=s3_section(swift, bucket), mqtt__host="127.0.0.1", mqtt__port=broker.port
        )
        inbox = Path(cfg.capture.folder.path)
        inbox.mkdir(parents=True)
        files = sorted(chest_images["root"].glob("*.png"))[:3]
        for p in files:
            shutil.copy(p, inbox / p.name)
        d = daemon_factory(cfg)
        wait_until(
            lambda: d.store.counts().get("analysed") == 3 and d.store.count_due("s3") == 0,
            60,
            "3 records synced",
        )
        wait_until(lambda: len(sub.payloads("/events")) >= 3, 30, "3 events")
        s3 = swift.client()
        for rec in d.store.iter_analysed():
            data = d.store.original_path(rec.id, rec.ext).read_bytes()
            head = s3.head_object(Bucket=bucket, Key=original_key("s3e", rec))
            assert head["ContentLength"] == len(data)
            assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
            assert head["Metadata"]["sha256"] == rec.id == hashlib.sha256(data).hexdigest()
            key = original_key("s3e", rec)
            assert key.startswith(
                f"s3e/test-edge/{time.strftime('%Y/%m/%d', time.gmtime(rec.captured_at))}/"
            )
            doc = json.loads(
                s3.get_object(Bucket=bucket, Key=sidecar_key("s3e", rec))["Body"].read()
            )
            view = views.summary(rec)
            assert doc["id"] == rec.id and doc["caption"] == view["caption"] and doc["caption"]
            assert (
                doc["labels"] == view["labels"]
                and doc["anomaly"] == pytest.approx(view["anomaly"])
                and doc["revision"] == rec.revision == 1
            )
            assert doc["bundle"]["version"] == rec.bundle and doc["captured_at"].endswith("Z")
        events = sub.payloads("/events")
        assert {e["urls"]["s3"] for e in events} == {
            f"s3://{bucket}/{original_key('s3e', r)}" for r in d.store.iter_analysed()
        }
        health = httpx.get(f"http://127.0.0.1:{d.port}/healthz").json()
        s3 = health["parts"]["s3"]
        assert s3["pending"]["records"] == 0 and s3["healthy"]
    finally:
        sub.close()
        broker.stop()


def test_same_image_twice_is_uploaded_once(
    swift: Any, store: Store, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    bucket = new_bucket(swift)
    proxy = fault_proxy(swift.endpoint)
    fill(store, [50_000] * 3)
    first = service(store, swift, bucket, proxy.endpoint)
    assert first.drain_once(30) == ""
    assert object_puts(proxy) == 3
    assert first.uploader.conditional is False  # Swift: NotImplemented, so HEAD before PUT
    store.reset_sink("s3")  # as if every record had been sent but not marked (a crash)
    again = service(store, swift, bucket, proxy.endpoint)
    assert again.drain_once(30) == ""
    assert object_puts(proxy) == 3, "an original already in S3 was sent again"
    assert store.count_due("s3") == 0


def test_a_20_mb_original_goes_multipart_and_is_verified(
    swift: Any, store: Store, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    bucket = new_bucket(swift)
    proxy = fault_proxy(swift.endpoint)
    (rid,) = fill(store, [20_000_000])
    sync = service(store, swift, bucket, proxy.endpoint, part_size_mb=8, multipart_threshold_mb=16)
    assert sync.drain_once(60) == ""
    rec = store.get(rid)
    s3 = swift.client()
    head = s3.head_object(Bucket=bucket, Key=original_key("s3e", rec))
    assert head["ContentLength"] == 20_000_000 and head["ETag"].strip('"').endswith("-3")
    body = s3.get_object(Bucket=bucket, Key=original_key("s3e", rec))["Body"].read()
    assert hashlib.sha256(body).hexdigest() == rid
    assert proxy.count("PUT", "partNumber=", 200) == 3
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_server_down_then_back_syncs_everything_once(
    swift: Any,
    store: Store,
    fault_proxy: Callable[[str], FaultProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = new_bucket(swift)
    proxy = fault_proxy(swift.endpoint)
    ids = fill(store, [20_000] * 20)
    proxy.fault("refuse")
    sync = service(store, swift, bucket, proxy.endpoint, concurrency=4)
    caplog.set_level(logging.INFO, "s3e")
    sync.start()
    try:
        wait_until(lambda: sync.sink.failures >= 3, 30, "three failed passes")
        assert store.count_due("s3") == 20
        assert status(sync.cfg, store)["last_error"]
        proxy.fault("none")
        wait_until(lambda: store.count_due("s3") == 0, 60, "all synced after the outage")
    finally:
        sync.stop(5)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "S3" in r.message]
    assert len(errors) == 1, [r.message for r in errors]
    assert "reachable again" in caplog.text
    keys = {o["Key"] for o in swift.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {original_key("s3e", store.get(i)) for i in ids} | {
        sidecar_key("s3e", store.get(i)) for i in ids
    } | {thumbnail_key("s3e", store.get(i)) for i in ids}  # the fleet's page shows these
    assert object_puts(proxy) == 20


@pytest.mark.parametrize(
    "mode, every, times",
    [("500", 2, 8), ("503", 3, 8), ("cut", 3, 6), ("slow", 1, None)],
)
def test_faults_are_retried_and_nothing_is_sent_twice(
    swift: Any,
    store: Store,
    fault_proxy: Callable[[str], FaultProxy],
    mode: str,
    every: int,
    times: int | None,
) -> None:
    bucket = new_bucket(swift)
    proxy = fault_proxy(swift.endpoint)
    ids = fill(store, [30_000] * 6)
    proxy.fault(mode, every=every, times=times, delay_s=0.002)
    sync = service(store, swift, bucket, proxy.endpoint, attempts=4, concurrency=2)
    assert sync.drain_once(60) == ""
    proxy.fault("none")
    s3 = swift.client()
    for rid in ids:
        rec = store.get(rid)
        body = s3.get_object(Bucket=bucket, Key=original_key("s3e", rec))["Body"].read()
        assert hashlib.sha256(body).hexdigest() == rid
    if mode != "slow":
        assert any(st <= 0 or st >= 500 for _, _, st in proxy.requests), "no fault injected"
    landed = object_puts(proxy, (200, -200))
    assert landed == 6, "an original was stored twice, or not at all"


def test_kill_9_mid_multipart_then_restart_resumes_and_leaves_no_stale_upload(
    swift: Any, tmp_path: Path, fault_proxy: Callable[[str], FaultProxy]
) -> None:
    bucket = new_bucket(swift)
    proxy = fault_proxy(swift.endpoint)
    data_dir = tmp_path / "data"
    store = Store(data_dir, DEVICE)
    (rid,) = fill(store, [20_000_000])
    rec = store.get(rid)
    store.close()
    section = s3_section(swift, bucket, proxy.endpoint, part_size_mb=5, multipart_threshold_mb=8)

    def config(**more: Any) -> Path:
        lines = [f'device_id = "{DEVICE}"', f'data_dir = "{data_dir}"', "[s3]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in {**section, **more}.items()]
        path = tmp_path / "edge.toml"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    cmd = [sys.executable, "-m", "cloud_sync.cli", "run", "--once", "-q", "-c"]
    slow = subprocess.Popen(
        [*cmd, str(config(bandwidth_mb_s=4.0, concurrency=1))], cwd=ROOT, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: proxy.count("PUT", "partNumber=", 200) >= 2, 60, "two parts sent")
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
    s3 = swift.client()
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    sent_before = proxy.count("PUT", "partNumber=", 200)
    done = subprocess.run(
        [*cmd, str(config())], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "resuming the upload" in done.stderr
    assert 2 <= sent_before < 4
    assert proxy.count("PUT", "partNumber=", 200) == 4, "parts already there were sent again"
    body = s3.get_object(Bucket=bucket, Key=original_key("s3e", rec))["Body"].read()
    assert hashlib.sha256(body).hexdigest() == rid
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_wrong_credentials_one_clear_error_and_the_queue_stays(
    swift: Any, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = new_bucket(swift)
    fill(store, [10_000] * 5)
    caplog.set_level(logging.INFO, "s3e")
    wrong = service(store, swift, bucket, secret_access_key="not-the-secret")
    left = wrong.drain_once(5)
    assert "5 records left" in left and "SignatureDoesNotMatch" in left
    errors = [r.message for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "refused" in errors[0] and bucket in errors[0], errors
    assert store.count_due("s3") == 5
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloud_sync.cli",
            "status",
            "--json",
            "-c",
            str(write_config(store, swift, bucket)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    st = json.loads(out.stdout)
    assert st["pending"]["records"] == 5 and "SignatureDoesNotMatch" in st["last_error"]
    assert not st["healthy"]
    assert service(store, swift, bucket).drain_once(30) == ""
    assert store.count_due("s3") == 0


def test_missing_bucket_is_named_in_one_line(
    swift: Any, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    fill(store, [10_000] * 2)
    left = service(store, swift, "no-such-bucket-here").drain_once(5)
    assert "NoSuchBucket" in left and "no-such-bucket-here" in left
    assert store.count_due("s3") == 2


def write_config(store: Store, server: Any, bucket: str, **more: Any) -> Path:
    path = store.root / "edge.toml"
    lines = [f'device_id = "{store.device_id}"', f'data_dir = "{store.root}"', "[s3]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in s3_section(server, bucket, **more).items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def test_conditional_put_answers_412_and_the_object_is_kept_or_mended(
    moto_server: Any,
    store: Store,
    fault_proxy: Callable[[str], FaultProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = new_bucket(moto_server)
    proxy = fault_proxy(moto_server.endpoint)
    good, bad = fill(store, [40_000, 40_000])
    s3 = moto_server.client()
    keys = {rid: original_key("s3e", store.get(rid)) for rid in (good, bad)}
    s3.put_object(Bucket=bucket, Key=keys[good], Body=store.original_path(good, "jpg").read_bytes())
    s3.put_object(Bucket=bucket, Key=keys[bad], Body=b"not the original")
    before = s3.head_object(Bucket=bucket, Key=keys[good])["LastModified"]
    sync = service(store, moto_server, bucket, proxy.endpoint)
    assert sync.drain_once(30) == ""
    assert proxy.count("PUT", keys[good], 412) == 1 and proxy.count("PUT", keys[good], 200) == 0
    assert s3.head_object(Bucket=bucket, Key=keys[good])["LastModified"] == before
    body = s3.get_object(Bucket=bucket, Key=keys[bad])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == bad
    assert "holds other bytes" in caplog.text
    assert sync.uploader.conditional is True


def test_every_record_refused_alike_is_a_config_error_and_the_queue_waits(
    moto_server: Any, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = new_bucket(moto_server)
    fill(store, [10_000] * 3)
    left = service(store, moto_server, bucket, storage_class="NOT_A_CLASS").drain_once(2)
    assert "3 records left" in left and "InvalidStorageClass" in left
    assert store.count_due("s3") == 3
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    assert service(store, moto_server, bucket).drain_once(10) == ""


def test_quota_deletes_only_synced_originals_and_images_redirect_to_s3(
    swift: Any,
    tmp_path: Path,
    edge_config: Any,
    daemon_factory: Any,
    fault_proxy: Callable[[str], FaultProxy],
) -> None:
    bucket = new_bucket(swift)
    proxy = fault_proxy(swift.endpoint)
    store = Store(tmp_path / "data", "test-edge")
    synced = fill(store, [100_000] * 6, seed=1)
    assert service(store, swift, bucket).drain_once(30) == ""
    unsynced = fill(store, [100_000] * 4, seed=2)
    store.close()
    proxy.fault("refuse")  # the link is down: the 4 new ones cannot go
    cfg = edge_config(
        s3=s3_section(swift, bucket, proxy.endpoint, local_quota_mb=0.25), device_id="test-edge"
    )
    d = daemon_factory(cfg)
    present = {rid: d.store.original_path(rid, "jpg").exists() for rid in synced + unsynced}
    assert all(present[rid] for rid in unsynced), "an unsynced original was deleted"
    assert not any(present[rid] for rid in synced), "synced originals over the quota stayed"
    assert all(d.store.derived_path(rid, "thumb.jpg").exists() for rid in synced)
    http = httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=30)
    r = http.get(f"/images/{synced[0]}")
    assert r.status_code == 307
    proxy.fault("none")  # the presigned URL points at the (proxied) S3 endpoint
    original = httpx.get(r.headers["location"], timeout=30)
    assert original.status_code == 200
    assert hashlib.sha256(original.content).hexdigest() == synced[0]
    assert http.get(f"/images/{unsynced[0]}").status_code == 200
    wait_until(lambda: d.store.count_due("s3") == 0, 60, "the rest synced")
    wait_until(lambda: d.store.local_bytes() <= 250_000, 30, "the quota holds")


def test_enforce_quota_never_deletes_an_unsynced_original(store: Store) -> None:
    ids = fill(store, [100_000] * 5)
    assert enforce_quota(store, 0) == (0, 0, True)
    assert all(store.original_path(i, "jpg").exists() for i in ids)
    store.set_mark(S3_ORIGINAL, ids[:2])  # verified in S3
    assert enforce_quota(store, 0) == (2, 200_000, True)
    assert [store.original_path(i, "jpg").exists() for i in ids] == [False, False] + [True] * 3


def test_one_syncer_per_store_and_a_daemon_waits_for_the_lock(
    swift: Any, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = new_bucket(swift)
    first = service(store, swift, bucket)
    first.start()
    second = service(store, swift, bucket)
    try:
        with pytest.raises(SyncLockedError, match=str(os.getpid())):
            service(store, swift, bucket).drain_once(1)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "cloud_sync.cli",
                "run",
                "--once",
                "-c",
                str(write_config(store, swift, bucket)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 3 and "is syncing" in out.stderr
        second.start()  # as a daemon starting meanwhile would: it waits, it does not fail
        assert not second.lock.held and "waiting for it to finish" in caplog.text
        first.stop(5)
        fill(store, [10_000] * 2)
        second.worker.notify()
        wait_until(lambda: store.count_due("s3") == 0, 30, "the second syncer takes over")
        assert second.lock.held
    finally:
        first.stop(5)
        second.stop(5)


def test_s3e_sync_run_once_drains_with_a_progress_bar_and_status_reports(
    swift: Any, store: Store
) -> None:
    bucket = new_bucket(swift)
    fill(store, [30_000] * 4)
    path = write_config(store, swift, bucket)
    run = subprocess.run(
        [sys.executable, "-m", "cloud_sync.cli", "run", "--once", "-c", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "4 records" in run.stderr and "100%" in run.stderr
    assert f"done: 4 records synced to s3://{bucket}" in run.stdout
    st = subprocess.run(
        [sys.executable, "-m", "cloud_sync.cli", "status", "-c", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "pending      0 records" in st.stdout and "synced       4 objects" in st.stdout


def test_the_bandwidth_cap_holds_for_the_whole_device(swift: Any, store: Store) -> None:
    bucket = new_bucket(swift)
    fill(store, [1_000_000] * 3)
    sync = service(store, swift, bucket, bandwidth_mb_s=2.0, concurrency=3)
    t0 = time.monotonic()
    assert sync.drain_once(30) == ""
    # 3 MB at 2 MB/s, less the limiter's half-second burst: at least 1.25 s, whatever the
    # concurrency (a lower bound only: a slow machine takes longer, never shorter)
    assert time.monotonic() - t0 >= 1.2


def test_an_unknown_credentials_profile_is_a_config_error(swift: Any, store: Store) -> None:
    path = write_config(store, swift, "b-1")
    text = path.read_text().replace('access_key_id = "test:tester"', "")
    text = text.replace('secret_access_key = "testing"', 'profile = "no-such-profile-here"')
    path.write_text(text)
    env = {**os.environ, "AWS_CONFIG_FILE": str(path.parent / "none")}
    out = subprocess.run(
        [sys.executable, "-m", "cloud_sync.cli", "run", "--once", "-c", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2 and "s3.profile" in out.stderr, out.stderr


def test_s3e_sync_without_a_bucket_says_sync_is_off() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cloud_sync.cli", "status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "s3.bucket is empty" in out.stderr


@pytest.mark.parametrize(
    "section, message",
    [
        ({"bucket": "b-1", "part_size_mb": 4}, "s3.part_size_mb"),
        ({"bucket": "b-1", "access_key_id": "x"}, "give both or neither"),
        ({"bucket": "Bad_Bucket"}, "s3.bucket"),
        ({"bucket": "b-1", "prefix": "/abs"}, "s3.prefix"),
        ({"bucket": "b-1", "concurency": 2}, "s3.concurency: unknown key"),
    ],
)
def test_bad_s3_config_names_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config({"s3": section}, "edge.toml")


def test_keys_in_a_config_others_can_read_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[s3]\nbucket = "b-1"\naccess_key_id = "k"\nsecret_access_key = "s"\n')
    path.chmod(0o644)
    load_config(path)
    assert "chmod 600" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    load_config(path)
    assert "chmod 600" not in caplog.text

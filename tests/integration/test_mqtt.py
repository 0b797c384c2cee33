"""MQTT against a real mosquitto on 127.0.0.1: the payloads and their schema, retained status
and the last will, authentication and TLS, a broker outage and a kill -9 in the middle of a
burst (every record id arrives), commands, and the reference subscriber."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from support.common import ROOT, wait_until
from support.mqtt_broker import Broker, Collector, make_ca
from support.mqtt_subscriptions import LOG_SUBSCRIPTIONS, subscriptions

from edge.sinks.mqtt.events import json_schema

VALIDATOR = Draft202012Validator(json_schema())


def defs(name: str) -> Draft202012Validator:
    schema = json_schema()
    return Draft202012Validator({**schema, "$ref": f"#/$defs/{name}"})


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    """A broker that logs each subscription, so a test can wait for its subscriber."""
    b = Broker(tmp_path / "broker", "allow_anonymous true\n" + LOG_SUBSCRIPTIONS).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def many_images(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    from models.data.dataset import write_dataset

    root = write_dataset("chest", 500, 99, tmp_path_factory.mktemp("burst") / "chest")
    return [p.read_bytes() for p in sorted((root / "images").glob("*.png"))]


def mqtt_config(edge_config: Any, broker: Broker, **more: Any) -> Any:
    return edge_config(mqtt__host="127.0.0.1", mqtt__port=broker.port, **more)


def subscriber(broker: Broker, out: Path, *args: str) -> subprocess.Popen[bytes]:
    """`s3e-edge subscribe` in a process of its own, appending to `out`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "subscribe",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--out",
            str(out),
            *args,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )


def published(d: Any) -> int:
    return int(d.store.counts().get("analysed", 0) - d.store.count_due("mqtt"))


def all_published(d: Any, n: int) -> bool:
    return d.store.counts().get("analysed") == n and d.store.count_due("mqtt") == 0


def wait_subscribed(broker: Broker, topic: str, client_id: str | None = None) -> None:
    wait_until(lambda: subscriptions(broker, topic, client_id), 30, f"a subscription to {topic}")


def wait_rounds(worker: Any, n: int, what: str) -> None:
    """Until the sink's worker has come round `n` more times."""
    start = worker.rounds
    wait_until(lambda: worker.rounds >= start + n, 60, what)


def feed(d: Any, images: list[bytes]) -> set[str]:
    for i, data in enumerate(images):
        d.ingestor.ingest(data, "test", f"{i}.png")
    return {hashlib.sha256(b).hexdigest() for b in images}


def test_events_alerts_stats_and_discovery_arrive_and_match_the_schema(
    edge_config: Any, daemon_factory: Any, broker: Broker, many_images: list[bytes]
):
    sub = Collector(broker, "s3e/#", "homeassistant/#")
    cfg = mqtt_config(
        edge_config,
        broker,
        mqtt__homeassistant=True,
        mqtt__stats_interval_s=0.5,
        mqtt__alerts={"anomaly_above": 0.01, "labels": {"heart": 0.01}},
        mqtt__include_thumbnail=True,
    )
    d = daemon_factory(cfg)
    ids = feed(d, many_images[:4])
    wait_until(
        lambda: len(sub.payloads("/events")) == 4 and len(sub.payloads("/alerts")) == 4,
        30,
        "4 events and 4 alerts",
    )
    for e in sub.payloads("/events"):
        VALIDATOR.validate(e)
        assert e["device"] == "test-edge" and e["urls"]["s3"] is None
        assert e["urls"]["thumbnail"].endswith(f"/images/{e['id']}/thumb")
        assert len(e["thumbnail_jpeg_base64"]) <= cfg.mqtt.thumbnail_max_bytes
    assert {e["id"] for e in sub.payloads("/events")} == ids
    for a in sub.payloads("/alerts"):
        defs("alert").validate(a)
        assert {r["kind"] for r in a["reasons"]} == {"anomaly", "label"}
    wait_until(lambda: any(s["images_processed"] == 4 for s in sub.payloads("/stats")), 10)
    sub.close()
    late = Collector(broker, "s3e/#", "homeassistant/#")  # retained: status, stats, discovery
    wait_until(lambda: late.payloads("/stats") and late.payloads("/status"), 10, "retained")
    defs("stats").validate(late.payloads("/stats")[-1])
    assert late.payloads("/status") == ["online"]
    wait_until(lambda: len(late.payloads("/config")) == 3, 5, "3 discovery configs")
    configs = late.payloads("/config")
    assert {c["unique_id"] for c in configs} == {
        "s3e_test-edge_last_caption",
        "s3e_test-edge_anomaly",
        "s3e_test-edge_images_processed",
    }
    assert all(c["availability_topic"] == "s3e/test-edge/status" for c in configs)
    late.close()
    assert d.store.count_due("mqtt") == 0


def test_commands_answer_on_cmd_result_and_bad_ones_never_crash_the_daemon(
    edge_config: Any, daemon_factory: Any, broker: Broker
):
    d = daemon_factory(mqtt_config(edge_config, broker))
    wait_until(d.part("mqtt").link.connected.is_set, 10, "connected")
    wait_subscribed(broker, "s3e/test-edge/cmd/#", "s3e-test-edge")  # the daemon's commands
    sub = Collector(broker, "s3e/test-edge/cmd/result")
    wait_subscribed(broker, "s3e/test-edge/cmd/result")
    pub = Collector(broker)
    wait_until(pub.client.is_connected, 5)
    for topic, payload in [
        ("ping", '{"request_id": 1}'),
        ("bogus", "not json"),
        ("nope", "{}"),
        ("ping", "[1, 2]"),
        ("capture", ""),
        ("reindex", '{"request_id": "r"}'),
    ]:
        pub.client.publish(f"s3e/test-edge/cmd/{topic}", payload, qos=1)
    wait_until(lambda: len(sub.payloads("/result")) == 6, 10, "6 results")
    results = sub.payloads("/result")
    for r in results:
        defs("command_result").validate(r)
    by = [(r["command"], r["ok"]) for r in results]
    assert by == [
        ("ping", True),
        ("bogus", False),
        ("nope", False),
        ("ping", False),
        ("capture", False),
        ("reindex", True),
    ]
    assert results[0]["request_id"] == 1 and results[5]["request_id"] == "r"
    assert "not a JSON object" in results[1]["error"] and "unknown command" in results[2]["error"]
    assert "unknown command" in results[4]["error"]  # no camera runs, so no `capture`
    assert d.health()["status"] == "ok" and d.part("mqtt").link.connected.is_set()
    sub.close()
    pub.close()


def test_a_broker_outage_during_a_burst_of_500_loses_no_record(
    edge_config: Any,
    daemon_factory: Any,
    broker: Broker,
    many_images: list[bytes],
    tmp_path: Path,
):
    out = tmp_path / "events.jsonl"
    sub = subscriber(
        broker,
        out,
        "--device",
        "test-edge",
        "--client-id",
        "outage-test",
        "--count",
        "500",
        "--timeout",
        "240",
    )
    wait_subscribed(broker, "s3e/test-edge/events", "outage-test")
    d = daemon_factory(mqtt_config(edge_config, broker, model__workers=2))
    ids = {hashlib.sha256(b).hexdigest() for b in many_images}
    feeder = threading.Thread(target=feed, args=(d, many_images))
    feeder.start()  # the burst goes on while the broker is away
    wait_until(lambda: published(d) >= 50, 60, "50 published")
    broker.stop()
    down_at = published(d)
    link = d.part("mqtt").link
    tried = link.attempts
    wait_until(lambda: link.attempts >= tried + 2, 30, "reconnections tried while it is away")
    broker.start()
    feeder.join()
    _, err = sub.communicate(timeout=240)
    assert sub.returncode == 0
    got = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(got) == len(set(got)) == 500 and set(got) == ids
    assert down_at < 500, "the outage came too late to test anything"
    wait_until(lambda: all_published(d, 500), 30)
    assert "500 new" in err.decode()


def test_a_broker_that_stops_acknowledging_gets_nothing_marked_and_paho_queues_stay_bounded(
    edge_config: Any, daemon_factory: Any, broker: Broker, many_images: list[bytes]
):
    """SIGSTOP the broker mid-burst: the connection stays up but no PUBACK comes, which is
    what a half-open link looks like. Nothing may be marked published meanwhile."""
    sub = Collector(broker, "s3e/test-edge/events", client_id="stall-test")
    d = daemon_factory(mqtt_config(edge_config, broker, mqtt__publish_timeout_s=1.0))
    ids = feed(d, many_images[:300])
    wait_until(lambda: published(d) >= 30, 60, "30 published")
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    mqtt = d.part("mqtt")
    try:
        # acknowledgements already on the wire arrive: the round under way ends, and a whole
        # round after it waits out its PUBACKs
        wait_rounds(mqtt.worker, 2, "a publish round begun after the stop")
        frozen = published(d)
        wait_rounds(mqtt.worker, 3, "several publish rounds timing out")
        assert published(d) == frozen < 300
        # one round (an event, and an alert for an image with a finding), plus status and stats
        bound = 2 * 16 * d.cfg.mqtt.max_inflight + 10
        # paho holds no event or alert the sink does not count as awaiting its PUBACK (a
        # PUBACK removes it from paho's queue first, a connect empties both), so this bounds
        # paho's queue but for the few status and stats messages the bound allows for
        assert mqtt.sink.awaiting_ack <= bound
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    wait_until(lambda: all_published(d, 300), 90, "all 300 acknowledged")
    wait_until(lambda: {e["id"] for e in sub.payloads("/events")} == ids, 30, "every id")
    sub.close()


PUBLISHED = "status='analysed' AND seq NOT IN (SELECT seq FROM due WHERE sink='mqtt')"


def test_kill_9_mid_burst_then_restart_every_record_id_arrives(
    broker: Broker, many_images: list[bytes], tmp_path: Path
):
    from support.common import free_port
    from support.processes import db_count, healthy, write_config

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    config = write_config(
        tmp_path, port, mqtt=f"[mqtt]\nhost = '127.0.0.1'\nport = {broker.port}\n"
    )
    sub = Collector(broker, "s3e/proc-edge/events", client_id="kill-test")
    images = many_images[:200]
    for i, data in enumerate(images):
        (inbox / f"{i:03d}.png").write_bytes(data)

    def start() -> subprocess.Popen[bytes]:
        with open(tmp_path / "log.txt", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    proc = start()
    try:
        wait_until(lambda: db_count(tmp_path / "data", PUBLISHED) >= 20, 60)
    finally:
        proc.kill()
        proc.wait(10)
    published = db_count(tmp_path / "data", PUBLISHED)
    assert published < 200, "the kill came too late to test anything"
    proc = start()
    try:
        wait_until(lambda: healthy(port), 60)
        ids = {hashlib.sha256(b).hexdigest() for b in images}
        wait_until(lambda: {e["id"] for e in sub.payloads("/events")} == ids, 120, "every id")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    events = sub.payloads("/events")
    print(f"killed after {published} acknowledged; {len(events)} events for 200 ids")
    assert db_count(tmp_path / "data", f"status='analysed' AND NOT ({PUBLISHED})") == 0
    sub.close()


def test_status_is_retained_online_then_offline_by_last_will_on_kill_9_and_on_clean_stop(
    broker: Broker, tmp_path: Path
):
    from support.common import free_port
    from support.processes import write_config

    (tmp_path / "inbox").mkdir()
    config = write_config(
        tmp_path, free_port(), mqtt=f"[mqtt]\nhost = '127.0.0.1'\nport = {broker.port}\n"
    )
    sub = Collector(broker, "s3e/proc-edge/status")

    def run() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    proc = run()
    wait_until(lambda: sub.payloads("/status")[-1:] == ["online"], 60, "online")
    proc.kill()  # unclean: the broker publishes the will
    proc.wait(10)
    wait_until(lambda: sub.payloads("/status")[-1:] == ["offline"], 30, "the last will")
    proc = run()
    wait_until(lambda: sub.payloads("/status")[-1:] == ["online"], 60, "online again")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    wait_until(lambda: sub.payloads("/status")[-1:] == ["offline"], 10, "offline on stop")
    sub.close()
    retained = Collector(broker, "s3e/proc-edge/status")
    wait_until(lambda: retained.payloads("/status") == ["offline"], 10, "retained offline")
    retained.close()


def test_wrong_credentials_are_refused_with_one_clear_line_and_records_wait(
    tmp_path: Path,
    edge_config: Any,
    daemon_factory: Any,
    many_images: list[bytes],
    caplog: pytest.LogCaptureFixture,
):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "alice", "secret"], check=True)
    os.chmod(pw, 0o644)
    b = Broker(tmp_path / "auth", f"allow_anonymous false\npassword_file {pw}\n").start()
    try:
        caplog.set_level(logging.INFO, "s3e")
        d = daemon_factory(
            mqtt_config(
                edge_config,
                b,
                mqtt__username="alice",
                mqtt__password="wrong",
                mqtt__reconnect_min_s=0.2,
                mqtt__reconnect_max_s=0.4,
            )
        )
        feed(d, many_images[:3])
        wait_until(lambda: d.store.counts().get("analysed") == 3, 30)
        link = d.part("mqtt").link
        # several refused attempts: the fourth begins once three have been answered
        wait_until(lambda: link.attempts >= 4, 30, "several refused attempts")
        refused = [
            r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()
        ]
        assert len(refused) == 1 and "Not authorized" in refused[0]
        assert d.store.count_due("mqtt") == 3
        d.stop()
        secret = tmp_path / "mqtt-password"  # as systemd's LoadCredential= would provide it
        secret.write_text("secret\n")
        good = daemon_factory(
            mqtt_config(edge_config, b, mqtt__username="alice", mqtt__password_file=str(secret))
        )
        wait_until(lambda: all_published(good, 3), 30, "the 3 waiting records")
    finally:
        b.stop()


def test_tls_with_a_self_signed_ca_and_a_wrong_ca_refused(
    tmp_path: Path,
    edge_config: Any,
    daemon_factory: Any,
    many_images: list[bytes],
    caplog: pytest.LogCaptureFixture,
):
    ca = make_ca(tmp_path / "pki")
    other = make_ca(tmp_path / "pki", "other")
    b = Broker(
        tmp_path / "tls",
        f"allow_anonymous true\ncafile {ca['ca']}\ncertfile {ca['cert']}\nkeyfile {ca['key']}\n",
    ).start()
    try:
        caplog.set_level(logging.INFO, "s3e")
        bad = daemon_factory(mqtt_config(edge_config, b, mqtt__tls={"ca": str(other["ca"])}))
        feed(bad, many_images[:2])
        wait_until(lambda: any("TLS failed" in r.getMessage() for r in caplog.records), 20)
        line = next(r.getMessage() for r in caplog.records if "TLS failed" in r.getMessage())
        assert "CERTIFICATE_VERIFY_FAILED" in line
        wait_until(lambda: bad.store.counts().get("analysed") == 2, 30)
        wait_rounds(bad.part("mqtt").worker, 2, "the 2 records offered for publishing")
        assert bad.store.count_due("mqtt") == 2
        bad.stop()
        good = daemon_factory(mqtt_config(edge_config, b, mqtt__tls={"ca": str(ca["ca"])}))
        wait_until(lambda: all_published(good, 2), 30, "published over TLS")
    finally:
        b.stop()


def test_the_subscriber_drops_repeated_ids_and_rejects_invalid_payloads(
    edge_config: Any,
    daemon_factory: Any,
    broker: Broker,
    many_images: list[bytes],
    tmp_path: Path,
):
    out = tmp_path / "events.jsonl"
    sub = subscriber(broker, out, "--timeout", "12")
    wait_subscribed(broker, "s3e/+/events")
    d = daemon_factory(mqtt_config(edge_config, broker))
    ids = feed(d, many_images[:3])
    wait_until(lambda: all_published(d, 3), 30)
    d.store.reset_sink("mqtt")  # everything again: what at-least-once may do
    d.part("mqtt").worker.wake.set()
    wait_until(lambda: all_published(d, 3), 30)
    raw = Collector(broker)
    wait_until(raw.client.is_connected, 5)
    raw.client.publish("s3e/test-edge/events", json.dumps({"schema": 1, "id": "nope"}), qos=1)
    raw.close()
    _, err = sub.communicate(timeout=30)
    assert sub.returncode == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["id"] for e in lines} == ids and len(lines) == 3
    summary = err.decode()
    assert "3 duplicates dropped" in summary and "1 invalid" in summary
    assert "invalid event" in summary


def test_mqtt_3_1_1_works_too(
    edge_config: Any, daemon_factory: Any, broker: Broker, many_images: list[bytes]
):
    sub = Collector(broker, "s3e/test-edge/events")
    d = daemon_factory(mqtt_config(edge_config, broker, mqtt__protocol="3.1.1"))
    ids = feed(d, many_images[:2])
    wait_until(lambda: {e["id"] for e in sub.payloads("/events")} == ids, 30, "2 events")
    sub.close()


def test_mqtt_config_refuses_a_password_without_a_user_and_half_a_client_certificate():
    from edge.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"f.toml: mqtt: Value error, password without"):
        parse_config({"mqtt": {"host": "b", "password": "x"}}, "f.toml")
    with pytest.raises(ConfigError, match=r"mqtt.tls: Value error, cert and key go together"):
        parse_config({"mqtt": {"host": "b", "tls": {"ca": "c", "cert": "x"}}}, "f.toml")


def test_a_broker_that_requires_client_certificates_takes_ours_and_refuses_none(
    tmp_path: Path,
    edge_config: Any,
    daemon_factory: Any,
    many_images: list[bytes],
    caplog: pytest.LogCaptureFixture,
):
    ca = make_ca(tmp_path / "pki")
    b = Broker(
        tmp_path / "mtls",
        f"allow_anonymous true\ncafile {ca['ca']}\n"
        f"certfile {ca['cert']}\nkeyfile {ca['key']}\nrequire_certificate true\n",
    ).start()
    try:
        caplog.set_level(logging.INFO, "s3e")
        bare = daemon_factory(
            mqtt_config(edge_config, b, mqtt__tls={"ca": str(ca["ca"])}, mqtt__reconnect_min_s=0.2)
        )
        feed(bare, many_images[:2])
        wait_until(lambda: bare.store.counts().get("analysed") == 2, 30)
        wait_until(
            lambda: any("client certificate required" in r.getMessage() for r in caplog.records),
            20,
            "a refusal logged",
        )
        assert bare.store.count_due("mqtt") == 2
        bare.stop()
        tls = {"ca": str(ca["ca"]), "cert": str(ca["client_cert"]), "key": str(ca["client_key"])}
        good = daemon_factory(mqtt_config(edge_config, b, mqtt__tls=tls))
        wait_until(lambda: all_published(good, 2), 30, "published with a client certificate")
    finally:
        b.stop()


class CountingOpens:
    """A camera's OpenCV (its `cv2`), counting the videos it opens: each reopening of a looped
    file is a whole pass through it."""

    def __init__(self, cv2: Any) -> None:
        self.cv2, self.opened = cv2, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cv2, name)

    def VideoCapture(self, *args: Any) -> Any:  # noqa: N802 (OpenCV's name)
        self.opened += 1
        return self.cv2.VideoCapture(*args)


def test_the_capture_command_takes_a_camera_frame_now(
    edge_config: Any,
    daemon_factory: Any,
    broker: Broker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    from support.media import write_video

    video = write_video(tmp_path / "v.avi", seconds=30, fps=10, period=1)
    cfg = mqtt_config(
        edge_config,
        broker,
        capture__camera__url=str(video),
        capture__camera__interval_s=0,
        capture__camera__loop_file=True,
    )
    d = daemon_factory(cfg)
    wait_until(lambda: d.store.counts().get("analysed") == 1, 30, "the first frame")
    camera = next(s.source for s in d.sources if s.source.key == "camera")
    opens = CountingOpens(camera.cv2)
    monkeypatch.setattr(camera, "cv2", opens)
    # a whole pass through the file since: opened once, played to its end, opened again
    wait_until(lambda: opens.opened >= 2, 30, "the looped file played through again")
    # no timer, no scene change: nothing more (a frame is counted once it is stored)
    assert camera.frames_taken == 1
    assert d.store.counts().get("analysed") == 1
    sub = Collector(broker, "s3e/test-edge/cmd/result")
    wait_subscribed(broker, "s3e/test-edge/cmd/result")
    wait_subscribed(broker, "s3e/test-edge/cmd/#", "s3e-test-edge")  # the daemon's commands
    taken = camera.frames_taken
    sub.client.publish("s3e/test-edge/cmd/capture", '{"request_id": "now"}', qos=1)
    # counted at the camera: the looped file replays its frames, and one identical to the
    # first is (rightly) the same record, which made a count of analysed images flaky
    wait_until(lambda: camera.frames_taken > taken, 30, "the frame taken on command")
    wait_until(lambda: sub.payloads("/result"), 10)
    want = {"schema": 3, "command": "capture", "request_id": "now", "ok": True, "triggered": 1}
    assert sub.payloads("/result")[0] == want
    sub.close()


def test_an_unreadable_password_file_is_a_startup_error_naming_the_key(
    edge_config: Any, broker: Broker, tmp_path: Path
):
    from edge.daemon import Daemon, StartupError

    cfg = mqtt_config(
        edge_config, broker, mqtt__username="alice", mqtt__password_file=str(tmp_path / "missing")
    )
    with pytest.raises(StartupError, match=r"mqtt.password_file .*missing: No such file"):
        Daemon(cfg)

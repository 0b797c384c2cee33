"""The fleet's rules for what a payload may say (`fleet.trust`, `fleet.archive.row`), its
filters (`fleet.search.where`), and the ACL file `s3e-fleet device add` keeps."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from lancedb.expr import Expr

from cloud_sync.keys import original_key, thumbnail_key
from edge.search.engine import Filters
from edge.store.records import Record
from fleet.archive import row, schema
from fleet.broker import GLOBAL, device_patterns, ensure_acl, fleet_lines
from fleet.search import NOTHING, where
from fleet.trust import (
    INVALID,
    MAX_REVISION,
    REVISION,
    REVISION_STEP,
    WRONG_DEVICE,
    Refusals,
    RefusedError,
    admit,
    key_device,
    object_key_ok,
    object_keys,
    revision_ok,
    topic_device,
)

IMAGE = hashlib.sha256(b"an image").hexdigest()
WHEN = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
"""01:30 UTC on 2 March: the day in a key is the UTC one."""


def record(device: str = "ward-a", ext: str = "png") -> Record:
    return Record(
        seq=1,
        id=IMAGE,
        device_id=device,
        source="folder",
        source_name="x.png",
        captured_at=WHEN.timestamp(),
        accepted_at=WHEN.timestamp(),
        ext=ext,
        size=1,
        width=1,
        height=1,
        status="analysed",
        error=None,
        bundle="b@1",
        precision="int8",
        revision=1,
        accelerators={},
        timings={},
        analysis={},
    )


def doc(**change: Any) -> dict[str, Any]:
    base = {
        "id": IMAGE,
        "device": "ward-a",
        "captured_at": WHEN.isoformat(),
        "revision": 1,
        "caption": "small effusion",
        "labels": [{"name": "effusion", "score": 0.5}],
        "anomaly": 0.4,
        "bundle": {"version": "b@1"},
    }
    return base | change


def test_the_device_is_the_one_its_topic_or_key_names() -> None:
    assert topic_device("s3e/ward-a/events", "s3e") == "ward-a"
    assert topic_device("site/s3e/ward-a/events", "site/s3e/") == "ward-a"
    for topic in ("s3e/a/b/events", "s3e/../events", "s3e/ward-a/alerts", "other/ward-a/events"):
        assert topic_device(topic, "s3e") is None, topic
    assert key_device(f"s3e/ward-a/2026/03/02/{IMAGE}.json", "s3e") == "ward-a"
    assert key_device(f"ward-a/2026/03/02/{IMAGE}.json", "") == "ward-a"
    assert key_device(f"other/ward-a/2026/03/02/{IMAGE}.json", "s3e") is None


@pytest.mark.parametrize("prefix", ["s3e", "", "site/s3e"])
def test_rebuilt_keys_are_the_ones_the_device_writes(prefix: str) -> None:
    rec = record()
    assert object_keys(prefix, "ward-a", WHEN, IMAGE, "png", True) == (
        original_key(prefix, rec),
        thumbnail_key(prefix, rec),
    )
    assert object_keys(prefix, "ward-a", WHEN, IMAGE, "txt", False) == ("", "")
    assert object_key_ok(original_key(prefix, rec), prefix, "ward-a", IMAGE, False)
    assert object_key_ok(thumbnail_key(prefix, rec), prefix, "ward-a", IMAGE, True)


def test_only_an_images_own_keys_are_presignable() -> None:
    own = original_key("s3e", record())
    for key, device, image, thumb in [
        ("private/not-an-image.txt", "ward-a", IMAGE, False),
        (own, "ward-b", IMAGE, False),  # another device's
        (own, "ward-a", hashlib.sha256(b"other").hexdigest(), False),
        (own, "ward-a", IMAGE, True),  # an original is no thumbnail
        (own.replace(".png", ".txt"), "ward-a", IMAGE, False),
        (own.replace("2026/03/02", "2026/02/30"), "ward-a", IMAGE, False),
        (own.replace("ward-a/", "ward-a/../victim/"), "ward-a", IMAGE, False),
        ("x/" + own, "ward-a", IMAGE, False),
        (own, "..", IMAGE, False),
        (None, "ward-a", IMAGE, False),
    ]:
        assert not object_key_ok(key, "s3e", device, image, thumb), key


def test_a_revision_may_step_a_little_above_the_archives_never_past_the_ceiling() -> None:
    assert revision_ok(1, None) and revision_ok(REVISION_STEP, None)
    assert not revision_ok(REVISION_STEP + 1, None)
    assert revision_ok(3 + REVISION_STEP, 3) and not revision_ok(4 + REVISION_STEP, 3)
    assert not revision_ok(MAX_REVISION + 1, MAX_REVISION)
    assert not revision_ok(0, None) and not revision_ok(999999, 999998)


def test_admit_keeps_the_highest_revision_of_a_key_and_refuses_jumps() -> None:
    rows = [
        {"device": "a", "id": "1", "revision": 1, "n": 0},
        {"device": "a", "id": "1", "revision": 2, "n": 1},
        {"device": "a", "id": "1", "revision": 2, "n": 2},
        {"device": "b", "id": "1", "revision": 999999, "n": 3},
        {"device": "c", "id": "1", "revision": 12, "n": 4},
    ]
    kept, refused = admit(rows, {("c", "1"): 10})
    assert [r["n"] for r in kept] == [2, 4]
    assert [e.reason for e in refused] == [REVISION]


def test_refusals_log_one_line_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = Refusals(logging.getLogger("test.refusals"), quiet_s=60, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, "test.refusals")
    for k in range(50):
        now[0] = k * 0.1
        refusals.refuse(WRONG_DEVICE, f"forgery {k}")
    refusals.refuse(INVALID, "not JSON")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "forgery 0" in lines[0] and "not JSON" in lines[1]
    now[0] = 30.0
    refusals.flush()
    assert len(caplog.records) == 2, "the burst goes on"
    now[0] = 70.0
    refusals.flush()
    assert [r.getMessage() for r in caplog.records[2:]] == [
        "refused 49 more in 70 s, the payload names another device than its topic or its S3 key"
    ]
    refusals.refuse(WRONG_DEVICE, "a new burst")
    assert "a new burst" in caplog.records[-1].getMessage()
    assert refusals.counts == {WRONG_DEVICE: 51, INVALID: 1}


def test_a_row_is_its_topics_device_with_keys_rebuilt() -> None:
    r = row(doc(), "ward-a", "s3e", "s3://any/private/not-an-image.png", True)
    assert (r["device"], r["id"], r["revision"]) == ("ward-a", IMAGE, 1)
    assert list(r) == schema(1, 1).names, "in the schema's order: Ray's writer casts by position"
    assert (r["original_key"], r["thumbnail_key"]) == (
        original_key("s3e", record()),
        thumbnail_key("s3e", record()),
    )
    r = row(doc(), "ward-a", "s3e", "s3://any/private/not-an-image.txt", False)
    assert (r["original_key"], r["thumbnail_key"]) == ("", "")
    with pytest.raises(RefusedError) as e:
        row(doc(device="victim-02"), "ward-a", "s3e")
    assert e.value.reason == WRONG_DEVICE


@pytest.mark.parametrize(
    "bad",
    [
        doc(id="../../x"),
        doc(id=IMAGE.upper()),
        doc(revision="7"),
        doc(revision=True),
        doc(revision=0),
        doc(anomaly="high"),
        doc(caption="\ud800"),
        doc(labels=[{"name": 3}]),
        doc(vectors={"latent": [1.0, None]}),
        doc(vectors={"regions_int8": "not base64!"}),
        doc(captured_at="yesterday"),
        doc(bundle="b@1"),
    ],
)
def test_a_payload_of_the_wrong_shape_is_refused_not_written(bad: dict[str, Any]) -> None:
    with pytest.raises(RefusedError) as e:
        row(bad, "ward-a", "s3e")
    assert e.value.reason == INVALID
    with pytest.raises(RefusedError):
        row([bad], "ward-a", "s3e")


def test_filters_are_typed_and_text_only_of_checked_values() -> None:
    assert where(Filters()) is None
    typed = where(Filters(device="ward-a", source="x' OR 'a'='a", min_anomaly=0.5))
    assert isinstance(typed, Expr)
    assert "'x'' OR ''a''=''a'" in typed.to_sql()
    assert where(Filters(label="it's")) == "array_has(labels, 'it''s')"
    for f in (
        Filters(label="x\\' OR 1=1) --"),
        Filters(source="x\\' OR 1=1) --"),
        Filters(device="ward-a' OR 'a'='a"),
        Filters(min_anomaly=math.nan),
        Filters(label="a\x00b"),
    ):
        assert where(f) == NOTHING, f


def test_the_acl_file_gets_each_line_once_and_keeps_the_rest(tmp_path: Path) -> None:
    acl = tmp_path / "mosquitto.acl"
    acl.write_text("# ours\nuser admin\ntopic write s3e/+/cmd/#\n")
    wanted = {GLOBAL: device_patterns("s3e", "homeassistant"), "s3e-fleet": fleet_lines("s3e")}
    assert ensure_acl(acl, wanted) == [*wanted[GLOBAL], *wanted["s3e-fleet"]]
    assert ensure_acl(acl, wanted) == []
    assert ensure_acl(acl, {"admin": ["topic read s3e/+/cmd/result"]}) == [
        "topic read s3e/+/cmd/result"
    ]
    assert acl.read_text() == (
        "# ours\n"
        "pattern write s3e/%u/#\n"
        "pattern read s3e/%u/cmd/#\n"
        "pattern write homeassistant/sensor/s3e_%u/+/config\n"
        "\n"
        "user admin\n"
        "topic write s3e/+/cmd/#\n"
        "topic read s3e/+/cmd/result\n"
        "\n"
        "user s3e-fleet\n"
        "topic read s3e/+/events\n"
    )

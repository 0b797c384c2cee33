"""An output plug-in added by one file (tests/brightness_output.py) and a registry entry shows
up in records, the index, MQTT events and the S3 sidecar, with no other change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.brightness_output import BrightnessOutput
from support.common import wait_until
from support.mqtt_broker import Broker, Collector
from support.s3_servers import new_bucket, s3_section

from cloud_sync.keys import sidecar_key
from edge.analysis import outputs
from edge.analysis.bundle import load_bundle


def test_a_new_output_reaches_records_index_events_and_sidecar(
    swift: Any,
    tmp_path: Path,
    edge_config: Any,
    daemon_factory: Any,
    chest_images: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(outputs.OUTPUTS, BrightnessOutput.key, BrightnessOutput)
    bundle = tmp_path / "bundle"
    shutil.copytree(load_bundle("chest-int8").root, bundle)
    doc = json.loads((bundle / "bundle.json").read_text())
    doc["outputs"]["brightness"] = {"models": []}
    (bundle / "bundle.json").write_text(json.dumps(doc))
    bucket = new_bucket(swift)
    broker = Broker(tmp_path / "broker").start()
    try:
        sub = Collector(broker, "s3e/test-edge/events")
        cfg = edge_config(
            model__bundle=str(bundle),
            s3=s3_section(swift, bucket),
            mqtt__host="127.0.0.1",
            mqtt__port=broker.port,
        )
        inbox = Path(cfg.capture.folder.path)
        inbox.mkdir(parents=True)
        image = sorted(chest_images["root"].glob("*.png"))[0]
        shutil.copy(image, inbox / image.name)
        d = daemon_factory(cfg)
        wait_until(
            lambda: d.store.counts().get("analysed") == 1 and d.store.count_due("s3") == 0,
            60,
            "analysed and synced",
        )
        rec = next(d.store.iter_analysed())
        mean = rec.analysis["brightness"]["mean"]
        label = "bright" if mean > 0.3 else "dark"
        assert 0 < mean < 1 and rec.timings["brightness_ms"] >= 0
        got = httpx.get(f"http://127.0.0.1:{d.port}/search", params={"q": f"labels:{label}"}).json()
        assert [h["id"] for h in got["results"]] == [rec.id]
        record = httpx.get(f"http://127.0.0.1:{d.port}/records/{rec.id}").json()
        assert {"name": label, "score": mean, "kind": "brightness"} in record["labels"]
        wait_until(lambda: sub.payloads("/events"), 30, "the event")
        event = sub.payloads("/events")[0]
        assert event["outputs"]["brightness"] == {"mean": mean}
        assert label in {lab["name"] for lab in event["labels"]}
        side = json.loads(
            swift.client().get_object(Bucket=bucket, Key=sidecar_key("s3e", rec))["Body"].read()
        )
        assert side["outputs"]["brightness"] == {"mean": mean}
        sub.close()
    finally:
        broker.stop()

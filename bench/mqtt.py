"""MQTT: how fast the durable outbox drains, and how long an image takes to reach a subscriber.

    python bench/mqtt.py --json bench/results/mqtt.json

Needs `mosquitto` on the PATH (started here on a free port, as the tests do).

1. Outbox to PUBACK: N analysed records in a real store, published by the `published` sink
   (JSON event built from the row, QoS 1, marked in SQLite once acknowledged, at most
   `max_inflight` awaiting PUBACK); events/second, against plain paho publishing the same
   prebuilt payloads at QoS 1 with the same in-flight limit (paho queues the rest in memory)
   and waiting for every PUBACK, in the same process: the ratio is what durability costs.
2. Latency from image accepted to event received by a subscriber, p50/p99, through a real
   in-process daemon (ingest, analysis, publish), at 1, 10 and 100 images/second offered.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.mqtt_broker import Broker, Collector
from support.records import fill_analysed

from edge.config import parse_config
from edge.daemon import Daemon
from edge.metrics import Metrics
from edge.sinks.mqtt import events
from edge.sinks.mqtt.link import MqttLink, wait_acked
from edge.sinks.mqtt.sink import MqttSink
from edge.sinks.worker import SinkWorker
from edge.store.store import Store
from models.data.dataset import write_dataset


def outbox_rate(broker: Broker, tmp: Path, n: int) -> dict[str, float]:
    cfg = parse_config(
        {
            "data_dir": str(tmp / "outbox"),
            "device_id": "bench",
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
        }
    )
    store = Store(cfg.data_dir, "bench")
    fill_analysed(store, [64] * n)
    link = MqttLink(cfg.mqtt, "bench", dict)
    link.start()
    link.connected.wait(10)
    sink = MqttSink(link, store, cfg.mqtt, lambda: "http://127.0.0.1:8080", [])
    worker = SinkWorker(
        store, sink, batch=16 * cfg.mqtt.max_inflight, interval=1.0, metrics=Metrics()
    )
    payloads = [json.dumps(events.event(r, "http://x")) for r in store.iter_analysed()]

    def plain_run() -> float:
        """Publish everything and let paho keep `window` in flight (its own queue in memory)."""
        t0 = time.perf_counter()
        infos = [link.client.publish("bench/plain", p, qos=1) for p in payloads]
        assert wait_acked(link, infos, time.monotonic() + 60) == n
        return time.perf_counter() - t0

    def outbox_run() -> float:
        store.reset_sink("mqtt")
        t0 = time.perf_counter()
        assert worker.drain() == n and store.count_due("mqtt") == 0
        return time.perf_counter() - t0

    plain_run()  # warm-up of both paths, then alternate so neither gets the warm broker alone
    outbox_run()
    plain = min(plain_run() for _ in range(2))
    outbox = min(outbox_run() for _ in range(2))
    link.stop()
    store.close()
    return {
        "records": n,
        "outbox_events_per_s": n / outbox,
        "plain_paho_events_per_s": n / plain,
        "outbox_over_plain_time": outbox / plain,
    }


def latency(broker: Broker, tmp: Path, images: list[bytes], rate: float, seconds: float) -> dict:
    cfg = parse_config(
        {
            "data_dir": str(tmp / f"lat-{rate}"),
            "device_id": "bench",
            "model": {"catch_all": "", "accelerator": "cpu", "threads": 1, "workers": 2},
            "capture": {"folder": {"enabled": False}},
            "http": {"enabled": False},
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
        }
    )
    sub = Collector(broker, "s3e/bench/events")
    arrivals: dict[str, float] = {}
    real = sub._on_message

    def on_message(c: Any, u: Any, msg: Any) -> None:
        arrivals.setdefault(json.loads(msg.payload)["id"], time.time())
        real(c, u, msg)

    sub.client.on_message = on_message
    d = Daemon(cfg)
    d.start()
    d.part("mqtt").link.connected.wait(10)
    n = int(rate * seconds)
    accepted: dict[str, float] = {}

    def feed() -> None:
        start = time.monotonic()
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            got = d.ingestor.ingest(images[i % len(images)], "bench", f"{i}.png")
            accepted[got.id] = 0.0

    feeder = threading.Thread(target=feed)
    feeder.start()
    feeder.join()
    deadline = time.monotonic() + 120
    while len(arrivals) < len(accepted) and time.monotonic() < deadline:
        time.sleep(0.05)
    lat = []
    for rec in d.store.iter_analysed():
        if rec.id in arrivals:
            lat.append((arrivals[rec.id] - rec.accepted_at) * 1e3)
    d.stop()
    sub.close()
    p50, p99 = np.percentile(lat, [50, 99])
    return {
        "offered_per_s": rate,
        "images": len(accepted),
        "received": len(lat),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args()
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "when": dt.datetime.now(dt.UTC).isoformat(),
    }
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        broker = Broker(tmp / "broker").start()
        try:
            out["outbox"] = outbox_rate(broker, tmp, args.records)
            o = out["outbox"]
            print(
                f"outbox -> PUBACK: {o['outbox_events_per_s']:.0f} events/s; plain paho "
                f"{o['plain_paho_events_per_s']:.0f}/s; outbox takes "
                f"{o['outbox_over_plain_time']:.2f}x the time"
            )
            root = write_dataset("chest", 1000, 4242, tmp / "images")
            images = [f.read_bytes() for f in sorted((root / "images").glob("*.png"))]
            out["latency"] = []
            for rate, seconds in ((1, 20), (10, 10), (100, 5)):
                r = latency(broker, tmp, images[: int(rate * seconds)], rate, seconds)
                out["latency"].append(r)
                print(
                    f"{rate:>3} img/s offered: accepted -> received p50 {r['p50_ms']:.0f} ms, "
                    f"p99 {r['p99_ms']:.0f} ms ({r['received']}/{r['images']})"
                )
        finally:
            broker.stop()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

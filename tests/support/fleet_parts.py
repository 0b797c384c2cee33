"""The fleet's real parts for the tests: its config on the test broker and moto, ingest
workers in this process, `s3e-fleet serve` in its own, real `s3e-edge` daemons, the table's
rows, and events made as a device makes them (`edge.analysis.views.event`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from cloud_sync.keys import original_key, thumbnail_key
from edge.analysis import views
from edge.analysis.bundle import load_bundle
from edge.config import parse_config
from edge.daemon import Daemon
from edge.store.records import Record
from fleet.archive import Archive, ArchiveError, vector_dims
from fleet.config import FleetConfig
from fleet.config import parse_config as fleet_config
from fleet.ingest import Ingestor
from support.common import ROOT, free_port, wait_until
from support.mqtt_broker import Broker
from support.s3_servers import s3_section

RUNS = itertools.count()
"""Each test has its own share group: a persistent session an earlier test's worker left in
a group keeps its share of the group's messages until it comes back (the reconciler's case)."""


def fleet_cfg(
    broker: Broker, moto: Any, bucket: str, username: str = "", password: str = "", **batch: Any
) -> FleetConfig:
    return fleet_config(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "username": username,
                "password": password,
                "batch_events": 8,
                "batch_seconds": 0.3,
                "share_group": f"g{next(RUNS)}",
                **batch,
            },
            "s3": s3_section(moto, bucket),
            "archive": {"uri": f"s3://{bucket}/fleet"},
            "http": {"port": 0},
        },
        "test",
    )


def fleet_toml(cfg: FleetConfig) -> str:
    """The config as an operator writes it, for the fleet's CLI."""
    m, s = cfg.mqtt, cfg.s3
    login = [f'username = "{m.username}"', f'password = "{m.password.get_secret_value()}"']
    return "\n".join(
        [
            "[mqtt]",
            f'host = "{m.host}"',
            f"port = {m.port}",
            *(login if m.username else []),
            f"batch_events = {m.batch_events}",
            f"batch_seconds = {m.batch_seconds:g}",
            f'client_id = "{m.client_id}"',
            f'share_group = "{m.share_group}"',
            "[s3]",
            f'endpoint_url = "{s.endpoint_url}"',
            f'bucket = "{s.bucket}"',
            f'access_key_id = "{s.access_key_id}"',
            f'secret_access_key = "{s.secret_access_key.get_secret_value()}"',
            'addressing_style = "path"',
            "[archive]",
            f'uri = "{cfg.archive.uri}"',
            "",
        ]
    )


class Workers:
    """Ingest workers in this process, each in its own thread."""

    def __init__(self, cfg: FleetConfig, n: int) -> None:
        bundle = load_bundle(cfg.archive.bundle)
        self.list = []
        for k in range(n):
            c = cfg.model_copy(deep=True)
            c.mqtt.client_id = f"fleet-test-{k}-{os.getpid()}-{c.mqtt.share_group}"
            ing = Ingestor(c, Archive.current(c, vector_dims(bundle)))
            ing.start()
            threading.Thread(target=ing.run, daemon=True).start()
            self.list.append(ing)
        for k, ing in enumerate(self.list):
            assert ing.connected.wait(60), f"worker {k} not subscribed to {ing.topic} in 60 s"

    def stop(self) -> None:
        for ing in self.list:
            ing.stop()


COLUMNS = ["device", "id", "revision", "bundle", "original_key", "thumbnail_key"]


def rows(cfg: FleetConfig, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Every row of the archive, as it is now."""
    try:
        t = Archive.current(cfg).table
    except ArchiveError:
        return []  # no table yet
    t.checkout_latest()
    return list(t.search().select(columns or COLUMNS).limit(None).to_arrow().to_pylist())


def wait_rows(
    cfg: FleetConfig,
    n: int,
    timeout: float,
    *,
    workers: Workers | None = None,
    daemons: Sequence[Daemon] = (),
) -> None:
    """Wait until the archive holds `n` rows, reading it twice a second (each read lists and
    opens the table on the S3 server the devices and workers are using). A timeout says what
    the archive, the workers and the devices hold."""

    def state() -> str:
        got = rows(cfg)
        twice = sum(c > 1 for c in Counter((r["device"], r["id"]) for r in got).values())
        said = [f"{n} rows; the archive holds {len(got)}, {twice} (device, id) more than once"]
        said += [f"worker {k}: {w.stats}" for k, w in enumerate(workers.list if workers else [])]
        for d in daemons:
            left = sorted(p.name for p in Path(d.cfg.capture.folder.path).rglob("*"))
            said.append(f"{d.cfg.device_id}: {d.store.counts()}, in its inbox {left}")
        return "; ".join(said)

    wait_until(lambda: len(rows(cfg)) == n, timeout, state, every=0.5)


def device(tmp: Path, name: str, broker: Broker, moto: Any, bucket: str, **mqtt: Any) -> Daemon:
    """A real `s3e-edge` daemon publishing to the broker and syncing to the bucket; `mqtt`:
    more of its `[mqtt]` keys (a login, Home Assistant)."""
    (tmp / name / "inbox").mkdir(parents=True)
    cfg = parse_config(
        {
            "device_id": name,
            "data_dir": str(tmp / name / "data"),
            "model": {"bundle": "chest-int8", "catch_all": "", "accelerator": "cpu", "workers": 1},
            "capture": {
                "folder": {
                    "path": str(tmp / name / "inbox"),
                    "settle_s": 0.05,
                    "poll_interval_s": 0.1,
                }
            },
            "index": {"commit_every": 8, "commit_interval_s": 0.2},
            "http": {"port": 0},
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 0.5,
                **mqtt,
            },
            "s3": s3_section(moto, bucket),
        },
        "test",
    )
    d = Daemon(cfg)
    d.start()
    return d


def drop(d: Daemon, files: list[Path]) -> None:
    """Each file into the device's inbox as a careful writer puts it there: written under a
    `.part` name, then renamed (a test machine's load never shows the device half a file)."""
    inbox = Path(d.cfg.capture.folder.path)
    for p in files:
        shutil.copy(p, inbox / f"{p.name}.part")
        (inbox / f"{p.name}.part").rename(inbox / p.name)


def synced(d: Daemon) -> bool:
    c = d.store.counts()
    return not c.get("pending") and not c.get("due_s3") and not c.get("due_mqtt")


def serve(cfg: FleetConfig, tmp: Path, **http: Any) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    """`s3e-fleet serve` as an operator runs it, in its own process, and a client for it;
    `http`: more of its `[http]` keys (a token, hosts, limits)."""
    port = free_port()
    toml = tmp / "serve.toml"
    keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in http.items())
    toml.write_text(fleet_toml(cfg) + f"[http]\nport = {port}\n{keys}")
    with open(tmp / "serve.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.cli", "serve", "--config", str(toml)],
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def up() -> bool:
        assert proc.poll() is None, (tmp / "serve.log").read_text()[-2000:]
        try:
            return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, 60, "the fleet search answering")
    return proc, client


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def event(
    device_id: str,
    image: str,
    bucket: str,
    *,
    revision: int = 1,
    labels: tuple[str, ...] = ("effusion",),
    bundle: str = "",
    latent: list[float] | None = None,
    captured_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """An event as `edge.sinks.mqtt` publishes it for a synced JPEG (views.event of a record),
    the labels those of the VAE; `bundle` defaults to the fleet's own."""
    when = (captured_at or dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)).timestamp()
    rec = Record(
        seq=0,
        id=image,
        device_id=device_id,
        source="folder",
        source_name=f"{image[:8]}.jpg",
        captured_at=when,
        accepted_at=when,
        ext="jpg",
        size=1000,
        width=64,
        height=64,
        status="analysed",
        error=None,
        bundle=bundle or load_bundle("chest-int8").version,
        precision="int8",
        revision=revision,
        accelerators={},
        timings={},
        analysis={
            "vae": {
                "labels": [{"name": n, "score": 0.9} for n in labels],
                "anomaly": 0.5,
                "out_of_domain": False,
                "ood_score": 0.1,
            }
        },
    )
    urls = {
        "s3": f"s3://{bucket}/{original_key('s3e', rec)}",
        "s3_thumbnail": f"s3://{bucket}/{thumbnail_key('s3e', rec)}",
    }
    vecs = {"latent": latent} if latent is not None else None
    return views.event(rec, urls, None, vecs)

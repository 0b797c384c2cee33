"""The MQTT contract: topics and the payloads' JSON Schema (`docs/mqtt.schema.json`); the
payloads themselves are rendered by `edge.analysis.views`.

Every payload carries `schema` (its version), the record `id` (the sha256 of the original) and
its `revision`, so a subscriber drops the duplicates at-least-once delivery allows, `(device,
id, revision)`, and takes a re-analysed record's new revision as the correction it is.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from edge.analysis.views import DICOM_PUBLIC, SCHEMA_VERSION
from edge.config import MqttConfig


class Topics:
    """`<prefix>/<device>/{status,events,alerts,stats,cmd/#}`."""

    def __init__(self, prefix: str, device: str) -> None:
        base = f"{prefix.rstrip('/')}/{device}"
        self.status = f"{base}/status"
        self.events = f"{base}/events"
        self.alerts = f"{base}/alerts"
        self.stats = f"{base}/stats"
        self.cmd = f"{base}/cmd/"
        self.cmd_result = f"{base}/cmd/result"


def urls(base_url: str, rid: str) -> dict[str, Any]:
    """Where a record's views are on the device; plug-ins add theirs (cloud sync: `s3`)."""
    return {
        "image": f"{base_url}/images/{rid}",
        "thumbnail": f"{base_url}/images/{rid}/thumb",
        "record": f"{base_url}/records/{rid}",
        "s3": None,
    }


def small_jpeg(thumb: bytes, cap: int) -> str | None:
    """The thumbnail as base64 JPEG, shrunk until the base64 text fits `cap` bytes (None if it
    never does, or the thumbnail cannot be read: the event goes out without it)."""
    try:
        im = Image.open(io.BytesIO(thumb)).convert("RGB")
        for side, quality in ((160, 75), (128, 70), (96, 60), (64, 50)):
            im.thumbnail((side, side))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=quality)
            text = base64.b64encode(buf.getvalue()).decode()
            if len(text) <= cap:
                return text
    except (OSError, ValueError):
        return None
    return None


def homeassistant_configs(cfg: MqttConfig, device: str, topics: Topics) -> dict[str, dict]:
    """Discovery topic -> config: the device's sensors appear in Home Assistant by themselves."""
    dev = {"identifiers": [f"s3e_{device}"], "name": f"S3E {device}", "manufacturer": "S3E"}
    sensors = {
        "last_caption": ("Last caption", topics.events, "{{ value_json.caption }}", None),
        "anomaly": ("Anomaly", topics.events, "{{ (value_json.anomaly or 0) | round(2) }}", None),
        "images_processed": (
            "Images processed",
            topics.stats,
            "{{ value_json.images_processed }}",
            "total_increasing",
        ),
    }
    out = {}
    for key, (name, state_topic, template, state_class) in sensors.items():
        conf: dict[str, Any] = {
            "name": name,
            "unique_id": f"s3e_{device}_{key}",
            "state_topic": state_topic,
            "value_template": template,
            "availability_topic": topics.status,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": dev,
        }
        if state_class:
            conf["state_class"] = state_class
        out[f"{cfg.homeassistant_prefix}/sensor/s3e_{device}/{key}/config"] = conf
    return out


_LABEL = {
    "type": "object",
    "required": ["name", "score", "kind"],
    "properties": {
        "name": {"type": "string"},
        "score": {"type": "number"},
        "kind": {"enum": ["segment", "class", "face", "vae", "anomaly", "ood"]},
    },
}
_URLS = {
    "type": "object",
    "required": ["image", "thumbnail", "record", "s3"],
    "properties": {
        "image": {"type": "string"},
        "thumbnail": {"type": "string"},
        "record": {"type": "string"},
        "s3": {
            "type": ["string", "null"],
            "description": "s3://bucket/key of the original when cloud sync is on (it is "
            "there once synced, with a .json sidecar beside it); null when off",
        },
        "s3_thumbnail": {"type": "string", "description": "s3://bucket/key of its thumbnail"},
    },
}
_ID = {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "sha256 of the original"}
_TIME = {"type": "string", "format": "date-time"}


def json_schema() -> dict[str, Any]:
    """The schema of every payload, one definition per topic (`docs/mqtt.schema.json`)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://s3e.invalid/mqtt.schema.json",
        "title": "S3E MQTT payloads",
        "description": "Topics are <prefix>/<device>/<kind>; the prefix defaults to s3e.",
        "$ref": "#/$defs/event",
        "$defs": {
            "event": {
                "description": "<prefix>/<device>/events: one per analysis of an image, QoS 1, "
                "at least once (drop repeated (device, id, revision)); a re-analysis sends "
                "the next revision.",
                "type": "object",
                "required": [
                    "schema",
                    "id",
                    "revision",
                    "device",
                    "source",
                    "captured_at",
                    "caption",
                    "labels",
                    "segments",
                    "anomaly",
                    "bundle",
                    "outputs",
                    "timings_ms",
                    "urls",
                ],
                "properties": {
                    "schema": {"const": SCHEMA_VERSION},
                    "id": _ID,
                    "revision": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "1 for the first analysis, one more for each "
                        "re-analysis (a new bundle)",
                    },
                    "outputs": {
                        "type": "object",
                        "description": "each output plug-in's fields, by key (caption, "
                        "segmentation, vae, ...); an out-of-domain image's carry only the "
                        "verdict (vae: anomaly, out_of_domain, ood_score)",
                        "additionalProperties": {"type": "object"},
                    },
                    "device": {"type": "string"},
                    "source": {"type": "string"},
                    "source_name": {"type": "string"},
                    "captured_at": _TIME,
                    "accepted_at": _TIME,
                    "caption": {"type": "string"},
                    "labels": {"type": "array", "items": _LABEL},
                    "segments": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["class", "fraction"],
                            "properties": {
                                "class": {"type": "string"},
                                "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                            },
                        },
                    },
                    "anomaly": {"type": ["number", "null"]},
                    "out_of_domain": {
                        "type": "boolean",
                        "description": "the image is out of "
                        "the bundle's domain: its caption is withheld (empty) and "
                        "its one label is out_of_domain",
                    },
                    "ood_score": {
                        "type": ["number", "null"],
                        "description": "above 1: out of domain",
                    },
                    "bundle": {"type": "object", "required": ["version", "precision"]},
                    "dicom": {
                        "type": "object",
                        "description": "a DICOM's attributes that leave the device (present "
                        "only for a DICOM; each only when the file has it); never the "
                        "patient's identity nor the study date",
                        "properties": {k: {"type": "string"} for k in DICOM_PUBLIC},
                        "additionalProperties": False,
                    },
                    "accelerators": {"type": "object", "additionalProperties": {"type": "string"}},
                    "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}},
                    "urls": _URLS,
                    "thumbnail_jpeg_base64": {"type": "string"},
                    "vectors": {
                        "type": "object",
                        "description": "what a fleet searches by: "
                        "`profile` (the image's score for each word of the bundle's "
                        "text encoder), `latent` (the VAE's), `regions_int8` (base64 "
                        "int8 region vectors, /127)",
                        "properties": {
                            "profile": {"type": "array", "items": {"type": "number"}},
                            "latent": {"type": "array", "items": {"type": "number"}},
                            "regions_int8": {"type": "string"},
                        },
                    },
                },
            },
            "alert": {
                "description": "<prefix>/<device>/alerts: an image crossed a threshold.",
                "type": "object",
                "required": [
                    "schema",
                    "id",
                    "revision",
                    "device",
                    "captured_at",
                    "reasons",
                    "urls",
                ],
                "properties": {
                    "schema": {"const": SCHEMA_VERSION},
                    "id": _ID,
                    "revision": {"type": "integer", "minimum": 1},
                    "reasons": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["kind", "value", "threshold"],
                            "properties": {"kind": {"enum": ["anomaly", "label"]}},
                        },
                    },
                    "urls": _URLS,
                },
            },
            "stats": {
                "description": "<prefix>/<device>/stats: retained, every stats_interval_s.",
                "type": "object",
                "required": ["schema", "device", "images_processed", "queues", "disk"],
            },
            "command_result": {
                "description": "<prefix>/<device>/cmd/result: the answer to a command sent on "
                "<prefix>/<device>/cmd/<name> (capture, reindex, ping, bundle).",
                "type": "object",
                "required": ["schema", "command", "ok"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "error": {"type": "string"},
                    "request_id": {},
                },
            },
            "status": {
                "description": "<prefix>/<device>/status: retained 'online' or "
                "'offline' (also the last will)",
                "enum": ["online", "offline"],
            },
        },
    }

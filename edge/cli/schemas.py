"""`s3e-edge openapi` and `s3e-edge mqtt-schema`: the HTTP API's and the MQTT payloads'
schemas, as `docs/openapi.json` and `docs/mqtt.schema.json` hold them."""

from __future__ import annotations

import argparse
import json

from edge.api.app import build_app
from edge.cli.command import Command
from edge.config import EdgeConfig, HttpConfig
from edge.sinks.mqtt.events import json_schema


def print_openapi(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    print(json.dumps(openapi_schema(), indent=1, sort_keys=True))
    return 0


def print_mqtt_schema(cfg: EdgeConfig, args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=1, sort_keys=True))
    return 0


def openapi_schema() -> dict[str, object]:
    """The HTTP API's schema, built without models or data (for docs/openapi.json)."""
    return dict(build_app(HttpConfig()).openapi())


OPENAPI = Command("openapi", "print the HTTP API's OpenAPI schema", print_openapi)
MQTT_SCHEMA = Command(
    "mqtt-schema", "print the JSON Schema of the MQTT payloads", print_mqtt_schema
)

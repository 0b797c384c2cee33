"""The schemas in docs/ (HTTP, MQTT) are the ones the code serves and publishes."""

from __future__ import annotations

import json

from conftest import ROOT

from edge.cli import openapi_schema


def test_docs_openapi_json_matches_the_served_schema():
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(openapi_schema())), (
        "docs/openapi.json is stale: run `s3e-edge openapi > docs/openapi.json`"
    )
    assert {"/search", "/images", "/images/{rid}/attention", "/healthz"} <= set(committed["paths"])


def test_docs_mqtt_schema_matches_the_code():
    from edge.events import json_schema

    committed = json.loads((ROOT / "docs" / "mqtt.schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), (
        "docs/mqtt.schema.json is stale: run `s3e-edge mqtt-schema > docs/mqtt.schema.json`"
    )

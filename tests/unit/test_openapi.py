"""What the docs say is what the code does: the schemas in docs/ (HTTP, MQTT), and the
config examples in the README and docs/."""

from __future__ import annotations

import json

from support.common import ROOT

from edge.cli.schemas import openapi_schema


def test_docs_openapi_json_matches_the_served_schema():
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(openapi_schema())), (
        "docs/openapi.json is stale: run `s3e-edge openapi > docs/openapi.json`"
    )
    assert {"/search", "/images", "/images/{rid}/attention", "/healthz"} <= set(committed["paths"])


def test_docs_mqtt_schema_matches_the_code():
    from edge.sinks.mqtt.events import json_schema

    committed = json.loads((ROOT / "docs" / "mqtt.schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), (
        "docs/mqtt.schema.json is stale: run `s3e-edge mqtt-schema > docs/mqtt.schema.json`"
    )


def test_every_toml_example_in_the_docs_is_a_valid_config():
    import re
    import tomllib

    from edge.config import parse_config

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = [
        (page.name, block)
        for page in pages
        for block in re.findall(r"```toml\n(.*?)```", page.read_text(), re.S)
    ]
    assert len(blocks) >= 2
    for name, block in blocks:
        parse_config(tomllib.loads(block), name)

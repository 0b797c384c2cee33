"""The daemon's config: a typo or a wrong type is an error naming the file and the dotted key,
a plug-in's section (a sink's, a capture source's) is validated by the plug-in's own model
once registered, credentials that cannot work are refused, and a TOML syntax error names
the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.tally_sink import TallyConfig, TallySink
from support.tally_sink import plugin as tally
from support.ticker_source import TickerConfig, TickerSource

from edge import capture
from edge.config import (
    ConfigError,
    EdgeConfig,
    FolderCaptureConfig,
    MqttConfig,
    load_config,
    parse_config,
)
from edge.sinks import registry


def refused(data: dict[str, Any], source: str = "edge.toml") -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data, source)
    return str(e.value)


@pytest.fixture
def tally_registered() -> Iterator[None]:
    registry.register(tally)
    yield
    registry.unregister(tally.key)


@pytest.fixture
def ticker_registered() -> Iterator[None]:
    capture.register(TickerSource)
    yield
    capture.unregister(TickerSource.key)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"mqtt": {"hots": "broker"}}, "mqtt.hots"),
        ({"capture": {"folder": {"setle_s": 1}}}, "capture.folder.setle_s"),
        ({"devce_id": "x"}, "devce_id"),
    ],
)
def test_a_typo_names_the_file_and_the_dotted_key_as_unknown(
    data: dict[str, Any], key: str
) -> None:
    assert f"edge.toml: {key}: unknown key" in refused(data)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"index": {"commit_every": "many"}}, "index.commit_every"),
        ({"http": {"port": 70000}}, "http.port"),
        ({"model": {"accelerator": "tpu"}}, "model.accelerator"),
        ({"mqtt": {"alerts": {"labels": {"opacity": "high"}}}}, "mqtt.alerts.labels.opacity"),
    ],
)
def test_a_wrong_type_or_value_names_the_dotted_key(data: dict[str, Any], key: str) -> None:
    assert refused(data).startswith(f"edge.toml: {key}: ")


def test_every_error_is_named_not_only_the_first() -> None:
    lines = refused({"mqtt": {"hots": "x"}, "index": {"heap_mb": 1}}).splitlines()
    assert len(lines) == 2
    assert any("mqtt.hots" in ln for ln in lines) and any("index.heap_mb" in ln for ln in lines)


def test_a_password_without_a_username_is_refused() -> None:
    message = refused({"mqtt": {"host": "broker", "password": "secret"}})
    assert message.startswith("edge.toml: mqtt: ") and "password without username" in message
    assert "secret" not in message


def test_a_password_file_without_a_username_is_refused_too() -> None:
    assert "password without username" in refused({"mqtt": {"password_file": "/run/pw"}})


def test_a_password_with_a_username_is_taken() -> None:
    cfg = parse_config({"mqtt": {"host": "broker", "username": "edge", "password": "secret"}})
    assert cfg.mqtt.password.get_secret_value() == "secret"


def test_an_unregistered_plug_in_section_is_an_unknown_key() -> None:
    assert "edge.toml: tally: unknown key" in refused({"tally": {"enabled": True}})


@pytest.mark.usefixtures("tally_registered")
def test_a_sink_plug_ins_section_is_validated_by_its_own_model() -> None:
    cfg = parse_config({"tally": {"enabled": True, "refuse": ["a.png"]}})
    section = cfg.section("tally", TallyConfig)
    assert section.enabled and section.refuse == ["a.png"]
    assert tally.enabled(cfg)
    assert TallySink(section).cfg.refuse == ["a.png"]


@pytest.mark.usefixtures("tally_registered")
@pytest.mark.parametrize(
    ("section", "key", "says"),
    [
        ({"enabeld": True}, "tally.enabeld", "unknown key"),
        ({"refuse": "a.png"}, "tally.refuse", "valid list"),
    ],
)
def test_an_error_in_a_sink_plug_ins_section_names_its_key(
    section: dict[str, Any], key: str, says: str
) -> None:
    message = refused({"tally": section})
    assert message.startswith(f"edge.toml: {key}: ") and says in message


@pytest.mark.usefixtures("tally_registered")
def test_a_plug_ins_section_left_out_gets_its_defaults() -> None:
    cfg = parse_config({})
    assert cfg.section("tally", TallyConfig) == TallyConfig()
    assert not tally.enabled(cfg)


@pytest.mark.usefixtures("ticker_registered")
def test_a_capture_sources_section_is_validated_by_its_own_model() -> None:
    cfg = parse_config({"capture": {"ticker": {"count": 3}, "folder": {"settle_s": 1.5}}})
    assert cfg.section("capture.ticker", TickerConfig).count == 3
    assert cfg.capture.folder.settle_s == 1.5, "the core section beside it is kept"
    message = refused({"capture": {"ticker": {"count": -1}}})
    assert message.startswith("edge.toml: capture.ticker.count: ")


def test_a_capture_source_unregistered_is_an_unknown_key_again() -> None:
    capture.register(TickerSource)
    capture.unregister(TickerSource.key)
    assert "capture.ticker: unknown key" in refused({"capture": {"ticker": {"count": 1}}})


def test_section_reads_a_core_section_by_its_dotted_key() -> None:
    cfg = parse_config({"capture": {"folder": {"path": "/srv/inbox"}}})
    folder = cfg.section("capture.folder", FolderCaptureConfig)
    assert folder is cfg.capture.folder and folder.path == Path("/srv/inbox")
    assert cfg.section("mqtt", MqttConfig) is cfg.mqtt


def test_section_of_the_wrong_model_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"\[mqtt\] is a MqttConfig, not a TallyConfig"):
        EdgeConfig().section("mqtt", TallyConfig)


def test_a_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[mqtt]\nhost = "broker\n')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: not valid TOML (")


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nowhere.toml")


def test_a_config_file_names_itself_in_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text("[index]\ncommit_evry = 8\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: index.commit_evry: unknown key"


def test_no_file_means_the_defaults() -> None:
    cfg = load_config(None)
    assert cfg == EdgeConfig()
    assert cfg.model.bundle == "chest-int8" and cfg.http.port == 8080

"""The `[http]` keys that guard the device: the token from a file (a systemd credential),
sessions, limits, and the warning for a server on a network with no token."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.api.auth import TokenFileError, exposure_warning, read_token
from edge.config import ConfigError, HttpConfig, parse_config


def test_token_and_token_file_together_are_refused_naming_both_keys():
    """Two sources of one secret would leave which one counts to chance."""
    with pytest.raises(ConfigError) as e:
        parse_config({"http": {"token": "a", "token_file": "/run/credentials/x/http"}}, "t.toml")
    assert "http.token" in str(e.value) and "http.token_file" in str(e.value)


def test_the_token_is_read_from_its_file_stripped(tmp_path: Path):
    """The config file can then hold no secret; a trailing newline is not part of it."""
    f = tmp_path / "http-token"
    f.write_text("s3cret-from-a-credential\n")
    assert read_token(HttpConfig(token_file=str(f))) == "s3cret-from-a-credential"
    assert read_token(HttpConfig(token="inline")) == "inline"
    assert read_token(HttpConfig()) == ""


@pytest.mark.parametrize(("content", "says"), [(None, "No such file"), ("\n  \n", "is empty")])
def test_a_missing_or_empty_token_file_is_an_error_naming_the_key(
    tmp_path: Path, content: str | None, says: str
):
    """An unreadable or empty credential must not leave the routes open without a word."""
    f = tmp_path / "http-token"
    if content is not None:
        f.write_text(content)
    with pytest.raises(TokenFileError) as e:
        read_token(HttpConfig(token_file=str(f)))
    assert "http.token_file" in str(e.value) and says in str(e.value)


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [
        ("0.0.0.0", False, True),
        ("::", False, True),
        ("192.168.1.20", False, True),
        ("edge-01.local", False, True),
        ("0.0.0.0", True, False),
        ("127.0.0.1", False, False),
        ("127.0.0.2", False, False),
        ("::1", False, False),
        ("[::1]", False, False),
        ("localhost", False, False),
    ],
)
def test_a_server_beyond_loopback_without_a_token_is_warned_about(
    host: str, token: bool, warned: bool
):
    line = exposure_warning(HttpConfig(host=host), token_required=token)
    assert (line is not None) == warned
    if line:
        assert "http.host" in line and "http.token" in line and host in line


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cookie_secure", "sometimes"),
        ("session_max_age_s", 0),
        ("max_sessions", 0),
        ("max_json_bytes", 10),
        ("login_attempts", 0),
    ],
)
def test_bad_session_and_limit_values_name_their_key(key: str, value: object):
    with pytest.raises(ConfigError, match=rf"http\.{key}"):
        parse_config({"http": {key: value}}, "t.toml")

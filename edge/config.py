"""The daemon's one config object: a TOML file validated at start, every key with a default.

`s3e-edge run` with no file works on a fresh machine from any working directory: the shipped
chest int8 bundle (and photos int8 for every image that is no radiograph), `./inbox` watched,
data in `./var/s3e`, search on 127.0.0.1:8080. Relative paths are taken from the working
directory. A typo or a wrong type is an error that names the
file and the dotted key, never a silent default. A sink plug-in's section (`[s3]` for cloud
sync) is validated by the plug-in's own model and kept in `plugins`.
"""

from __future__ import annotations

import logging
import stat
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

log = logging.getLogger("s3e.config")
SINK_ENTRY_POINTS = "s3e.sinks"
CAPTURE_ENTRY_POINTS = "s3e.capture"
S = TypeVar("S", bound=BaseModel)
_sections: dict[str, type[BaseModel]] = {}
"""Sections of sink plug-ins registered at run time (`edge.sinks.registry.register`)."""


class ConfigError(ValueError):
    """An unusable config; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ModelConfig(_Section):
    bundle: str = Field("chest-int8", description="a shipped bundle's name, or a bundle folder")
    catch_all: str = Field(
        "photos-int8",
        description="a bundle for the images `bundle` finds out of its domain (photos-int8 "
        "beside chest-int8: radiographs to chest, every other photograph to photos); "
        "empty = they stay flagged out of domain",
    )
    accelerator: Literal["cpu", "gpu", "auto"] = Field(
        "auto", description="gpu fails if no GPU can be used; auto falls back to the CPU"
    )
    gpu_delegate: str = Field(
        "", description="path of a TFLite GPU delegate library; empty = LiteRT's own GPU backend"
    )
    threads: int = Field(1, ge=1, le=64, description="CPU threads per interpreter (XNNPACK)")
    runtime: Literal["", "ai_edge_litert", "tflite_runtime"] = Field(
        "", description="force a TFLite runtime; empty = ai_edge_litert, else tflite_runtime"
    )
    beam_width: int = Field(0, ge=0, le=16, description="0 = the bundle's own beam width")
    workers: int = Field(
        2, ge=1, le=16, description="analysis processes, each with its own interpreters"
    )


class FolderCaptureConfig(_Section):
    enabled: bool = True
    path: Path = Path("./inbox")
    watch: Literal["auto", "inotify", "poll"] = Field(
        "auto", description="auto = inotify via watchdog, polling where that is unavailable"
    )
    poll_interval_s: float = Field(2.0, gt=0)
    settle_s: float = Field(
        0.5, ge=0, description="a file must keep its size and mtime this long to count as written"
    )
    delete_accepted: bool = Field(
        True, description="remove a file from the folder once the store holds it durably"
    )
    max_bytes: int = Field(64 * 1024 * 1024, gt=0, description="larger files are refused")
    follow_symlinks: bool = Field(
        False, description="take symbolic links; only to files inside symlink_roots"
    )
    symlink_roots: list[Path] = Field(
        default_factory=list,
        description="folders a followed link may point into (the watched folder always)",
    )


class CameraCaptureConfig(_Section):
    url: str = Field("", description="V4L2 device (/dev/video0 or 0), RTSP URL or video file")
    interval_s: float = Field(10.0, ge=0, description="one frame every N seconds; 0 = off")
    scene_change: float = Field(
        0.0, ge=0, le=1, description="mean abs frame difference (0..1) that triggers; 0 = off"
    )
    jpeg_quality: int = Field(90, ge=10, le=100)
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)
    loop_file: bool = Field(False, description="restart a video file at its end")


class UploadCaptureConfig(_Section):
    enabled: bool = True
    max_bytes: int = Field(25 * 1024 * 1024, gt=0)


class CaptureConfig(_Section):
    folder: FolderCaptureConfig = FolderCaptureConfig()
    camera: CameraCaptureConfig = CameraCaptureConfig()
    upload: UploadCaptureConfig = UploadCaptureConfig()


class ImageLimits(_Section):
    max_pixels: int = Field(
        50_000_000,
        gt=0,
        description="larger images are refused (decompression bombs); 50 M fits 48 MP cameras",
    )
    max_side: int = Field(20_000, gt=0, description="an image wider or taller is refused")
    decode_budget_mb: int = Field(
        256,
        ge=16,
        description="decoded pixels in flight at once; larger images wait their turn",
    )
    decode_wait_s: float = Field(
        10.0, gt=0, description="an upload waiting longer for the budget gets a 503"
    )
    thumb_size: int = Field(256, ge=32, le=2048)


class IndexConfig(_Section):
    commit_every: int = Field(64, ge=1, description="commit after this many records")
    commit_interval_s: float = Field(
        1.0,
        gt=0,
        description="or after this many seconds; sooner (at most every tenth of "
        "it) when the analysis has nothing left in hand",
    )
    heap_mb: int = Field(64, ge=15, le=4096)


class HttpConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    token: SecretStr = Field(
        SecretStr(""),
        description="bearer token (or the /login session cookie) for the data routes; empty = off",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names answered besides loopback and the bound address (e.g. the "
        "device's name on the LAN); others get 421, which stops DNS rebinding",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins, besides the device's own, allowed to POST",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="close a connection that has not sent a whole request by then"
    )
    max_connections: int = Field(256, ge=8, description="open connections at most")
    limit_concurrency: int = Field(
        64, ge=4, description="requests in progress at most; more get a 503"
    )
    body_idle_s: float = Field(
        15.0, gt=0, description="a request body that stalls this long is dropped (408)"
    )
    body_timeout_s: float = Field(
        120.0, gt=0, description="a request body (upload or JSON) must arrive by then"
    )
    token_file: str = Field(
        "",
        description="read the token from this file instead (e.g. a systemd credential in "
        "$CREDENTIALS_DIRECTORY), so the config file holds no secret",
    )
    max_json_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="a JSON request body (/login, /admin/bundle) over this gets a 413",
    )
    session_max_age_s: float = Field(
        12 * 3600.0,
        ge=1,
        le=30 * 86400,
        description="a /login session ends this long after it began (cookie Max-Age and "
        "server-side expiry)",
    )
    max_sessions: int = Field(
        256, ge=1, le=100_000, description="sessions kept at most; beyond it the oldest ends"
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto",
        description="the session cookie's Secure flag: auto = when the request came over "
        "https; always = behind a TLS proxy",
    )
    login_attempts: int = Field(
        5, ge=1, le=1000, description="wrong tokens a client may send before it must wait"
    )
    login_backoff_max_s: float = Field(
        300.0,
        ge=1,
        le=86400,
        description="the longest wait after wrong tokens (it doubles from 1 s up to this)",
    )

    @model_validator(mode="after")
    def _one_token(self) -> HttpConfig:
        if self.token.get_secret_value() and self.token_file:
            raise ValueError("give http.token or http.token_file, not both")
        return self


class MqttTlsConfig(_Section):
    ca: str = Field("", description="CA certificate (PEM) to verify the broker; empty = no TLS")
    cert: str = Field("", description="client certificate (PEM), for brokers that want one")
    key: str = Field("", description="the client certificate's private key (PEM)")

    @model_validator(mode="after")
    def _pair(self) -> MqttTlsConfig:
        if bool(self.cert) != bool(self.key):
            raise ValueError("cert and key go together")
        if self.cert and not self.ca:
            raise ValueError("a client certificate needs ca (TLS) too")
        return self


class MqttAlertConfig(_Section):
    anomaly_above: float = Field(
        1.5, ge=0, description="alert when the anomaly score is above this; 0 = off"
    )
    labels: dict[str, float] = Field(
        default_factory=dict,
        description="alert when one of these labels scores at least its value, e.g. "
        "{ opacity = 0.02 }",
    )


class MqttConfig(_Section):
    host: str = Field("", description="broker host; empty = publishing off")
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str = Field("", description="empty = s3e-<device_id>")
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: str = Field(
        "",
        description="read the password from this file instead (e.g. a systemd credential "
        "in $CREDENTIALS_DIRECTORY), so the config file holds no secret",
    )
    tls: MqttTlsConfig = MqttTlsConfig()
    topic_prefix: str = Field("s3e", pattern=r"^[^#+/][^#+]*$")
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
    max_inflight: int = Field(
        20,
        ge=1,
        le=1000,
        description="events awaiting PUBACK at most (lowered to the "
        "broker's Receive Maximum; mosquitto's default is 20)",
    )
    publish_timeout_s: float = Field(10.0, gt=0, description="wait for PUBACKs this long")
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)
    include_thumbnail: bool = Field(False, description="a small base64 JPEG in each event")
    thumbnail_max_bytes: int = Field(
        12_000, ge=1000, le=200_000, description="cap on the base64 text of the thumbnail"
    )
    base_url: str = Field(
        "", description="how subscribers reach this device's HTTP endpoint; empty = http.host"
    )
    stats_interval_s: float = Field(30.0, gt=0)
    alerts: MqttAlertConfig = MqttAlertConfig()
    homeassistant: bool = Field(False, description="publish Home Assistant discovery configs")
    homeassistant_prefix: str = "homeassistant"

    @model_validator(mode="after")
    def _credentials(self) -> MqttConfig:
        """A password alone would be sent with no user name: refuse it (as paho would not)."""
        has_password = bool(self.password.get_secret_value())
        if (has_password or self.password_file) and not self.username:
            raise ValueError("password without username")
        if has_password and self.password_file:
            raise ValueError("password and password_file: give one")
        return self


class DicomConfig(_Section):
    keep_identity: bool = Field(
        False,
        description="keep a DICOM file as received, the patient's identity in it (and so in its "
        "S3 copy); false: kept de-identified (PS3.15 Basic Profile), and an image with "
        "burned-in annotation refused",
    )


class IngestConfig(_Section):
    workers: int = Field(
        3, ge=1, le=32, description="threads that hash, decode and store images side by side"
    )


class ReanalysisConfig(_Section):
    share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="share of the analysis workers that re-analyse older records when no "
        "fresh image waits; 0 = only `s3e-edge reanalyze` does it",
    )


class EdgeConfig(_Section):
    device_id: str = Field("edge-01", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    data_dir: Path = Path("./var/s3e")
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout_s: float = Field(20.0, gt=0)
    model: ModelConfig = ModelConfig()
    capture: CaptureConfig = CaptureConfig()
    limits: ImageLimits = ImageLimits()
    index: IndexConfig = IndexConfig()
    http: HttpConfig = HttpConfig()
    mqtt: MqttConfig = MqttConfig()
    ingest: IngestConfig = IngestConfig()
    dicom: DicomConfig = DicomConfig()
    reanalysis: ReanalysisConfig = ReanalysisConfig()
    plugins: dict[str, BaseModel] = Field(default_factory=dict)
    """Each sink plug-in's validated section, by key (e.g. "s3")."""

    def section(self, key: str, model: type[S]) -> S:
        """A section by its dotted key: a core one (`mqtt`, `capture.folder`), or a plug-in's
        as given or its defaults."""
        node: object = self
        for name in key.split("."):
            node = getattr(node, name, None) if isinstance(node, BaseModel) else None
        got = node if node is not None else self.plugins.setdefault(key, model())
        if not isinstance(got, model):
            raise TypeError(f"[{key}] is a {type(got).__name__}, not a {model.__name__}")
        return got

    @field_validator("data_dir")
    @classmethod
    def _not_empty(cls, v: Path) -> Path:
        if not str(v):
            raise ValueError("must not be empty")
        return v


def describe_errors(e: ValidationError, source: str, prefix: str = "") -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "") or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def register_section(key: str, model: type[BaseModel]) -> None:
    """A plug-in's section, validated from now on: `key` is dotted (`s3`, `capture.ticker`)."""
    _sections[key] = model


def unregister_section(key: str) -> None:
    _sections.pop(key, None)


def plugin_sections() -> dict[str, type[BaseModel]]:
    """The sections of installed plug-ins (sinks and capture sources, by entry point) and of
    those registered; a plug-in that fails to load is skipped here (its registry logs why)."""
    found: dict[str, type[BaseModel]] = {}
    for group, prefix in ((SINK_ENTRY_POINTS, ""), (CAPTURE_ENTRY_POINTS, "capture.")):
        for ep in metadata.entry_points(group=group):
            try:
                plugin = ep.load()
            except Exception:  # logged by the plug-in's registry, which loads it again
                continue
            found[prefix + plugin.key] = plugin.Config
    return {**found, **_sections}


def parse_config(data: dict[str, Any], source: str = "<config>") -> EdgeConfig:
    """The core sections by `EdgeConfig`, each plug-in's by its own model."""
    sections = plugin_sections()
    core, given = _split(data, sections)
    errors = []
    try:
        cfg = EdgeConfig.model_validate(core)
    except ValidationError as e:
        errors.append(describe_errors(e, source))
        cfg = EdgeConfig()
    for key, model in sections.items():
        try:
            cfg.plugins[key] = model.model_validate(given.get(key, {}))
        except ValidationError as e:
            errors.append(describe_errors(e, source, prefix=key))
    if errors:
        raise ConfigError("\n".join(errors))
    return cfg


def _split(
    data: dict[str, Any], sections: dict[str, type[BaseModel]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the core tables, each plug-in section's table by dotted key)."""
    core = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    given = {}
    for key in sections:
        *parents, last = key.split(".")
        node: dict[str, Any] = core
        for name in parents:
            child = node.get(name)
            node = child if isinstance(child, dict) else {}
        if last in node:
            given[key] = node.pop(last)
    return core, given


def read_toml(p: Path) -> dict[str, Any]:
    """A TOML file's table, or ConfigError naming the file and what is wrong with it."""
    try:
        return tomllib.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: cannot read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None


def load_config(path: Path | str | None) -> EdgeConfig:
    """The config from a TOML file, or the defaults when no file is given."""
    if path is None:
        return EdgeConfig()
    p = Path(path)
    data = read_toml(p)
    cfg = parse_config(data, str(p))
    if _has_secret(cfg) and p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s holds a secret (a token, password or key) and others can read it: "
            "chmod 600 %s, or use the AWS_* environment, a credentials file, "
            "http.token_file or mqtt.password_file",
            p,
            p,
        )
    return cfg


def _has_secret(model: Any) -> bool:
    """Whether any SecretStr in the config (plug-ins' sections included) is set."""
    if isinstance(model, SecretStr):
        return bool(model.get_secret_value())
    if isinstance(model, BaseModel):
        return any(_has_secret(getattr(model, name)) for name in type(model).model_fields)
    if isinstance(model, dict):
        return any(_has_secret(v) for v in model.values())
    return False

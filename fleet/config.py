"""`s3e-fleet`'s one config object: a TOML file like the device's, validated at start; an
error names the file and the dotted key. `[s3]` is the device's own section (the bucket the
devices sync to, the same credential chain), so one file can serve both."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from cloud_sync.config import S3Config
from edge.config import ConfigError, HttpConfig, MqttTlsConfig, describe_errors, read_toml


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class FleetMqttConfig(_Section):
    host: str = Field("127.0.0.1", description="the broker the devices publish to")
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""
    password: SecretStr = SecretStr("")
    tls: MqttTlsConfig = MqttTlsConfig()
    topic_prefix: str = Field("s3e", pattern=r"^[^#+/][^#+]*$")
    share_group: str = Field(
        "s3e-fleet",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="workers in one group split the events ($share/<group>/...)",
    )
    client_id: str = Field(
        "",
        description="empty = s3e-fleet-<host>-<pid>; keep one per "
        "worker for its session to survive a restart",
    )
    batch_events: int = Field(256, ge=1, le=100_000, description="commit after N events")
    batch_seconds: float = Field(2.0, gt=0, description="or after T seconds")


class ArchiveConfig(_Section):
    uri: str = Field(
        "s3://s3e-archive/fleet",
        description="the LanceDB database (a folder "
        "or an s3:// prefix); the table `images` lives in it",
    )
    table: str = Field("images", pattern=r"^[A-Za-z0-9_-]+$")
    bundle: str = Field(
        "chest-int8",
        description="the bundle whose text encoder encodes "
        "queries; rows analysed by it are semantically searchable",
    )


class FleetHttpConfig(HttpConfig):
    """The device's `[http]` keys, checked by the same rules (token or token_file, sessions,
    hosts, origins, limits), so one guard serves both; only the port differs, so a fleet and
    a device can share a machine."""

    port: int = Field(8090, ge=0, le=65535)

    @model_validator(mode="after")
    def _always_on(self) -> FleetHttpConfig:
        if not self.enabled:
            raise ValueError(
                "http.enabled = false does not apply: `s3e-fleet serve` always listens "
                "(run `ingest` alone for no HTTP)"
            )
        return self


class ReconcileConfig(_Section):
    interval_s: float = Field(300.0, gt=0, description="list the bucket every N seconds")
    days: int = Field(8, ge=1, le=366, description="how many days back each pass looks")


class MaintainConfig(_Section):
    interval_s: float = Field(600.0, gt=0, description="compaction and index refresh")


class FleetConfig(_Section):
    log_format: Literal["text", "json"] = "text"
    mqtt: FleetMqttConfig = FleetMqttConfig()
    s3: S3Config = S3Config()
    archive: ArchiveConfig = ArchiveConfig()
    http: FleetHttpConfig = FleetHttpConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    maintain: MaintainConfig = MaintainConfig()


def parse_config(data: dict[str, object], source: str = "<config>") -> FleetConfig:
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_errors(e, source)) from None


def load_config(path: Path | str | None) -> FleetConfig:
    if path is None:
        return FleetConfig()
    p = Path(path)
    return parse_config(read_toml(p), str(p))

"""The `[s3]` section of the daemon's config: where originals go, how, and how fast.

Off when `bucket` is empty. Credentials come from boto3's own chain (environment, shared
credentials file and `profile`, instance role) unless keys are written here; then the file
holding them should be readable by its owner alone, which `load_config` warns about.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

MIB = 1024 * 1024


class S3Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    bucket: str = Field(
        "",
        pattern=r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="bucket name; empty = cloud sync off",
    )
    endpoint_url: str = Field(
        "", pattern=r"^$|^https?://", description="any S3-compatible server; empty = AWS"
    )
    region: str = Field("us-east-1", min_length=1)
    prefix: str = Field(
        "s3e",
        pattern=r"^([^/]+(/[^/]+)*)?$",
        description="key prefix: <prefix>/<device>/<yyyy>/<mm>/<dd>/<sha256>.<ext>",
    )
    profile: str = Field("", description="a named profile of the shared credentials file")
    access_key_id: str = Field("", description="empty = boto3's credential chain")
    secret_access_key: SecretStr = SecretStr("")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="path for most self-hosted servers (Swift, MinIO)"
    )
    storage_class: str = Field("", description="e.g. STANDARD_IA; empty = the bucket's default")
    bandwidth_mb_s: float = Field(0.0, ge=0, description="upload cap in MB/s; 0 = no cap")
    concurrency: int = Field(4, ge=1, le=64, description="objects uploaded at once")
    multipart_threshold_mb: int = Field(
        16, ge=5, le=5 * 1024, description="originals at least this big go multipart"
    )
    part_size_mb: int = Field(8, ge=5, le=5 * 1024, description="multipart part size (S3: >= 5)")
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    attempts: int = Field(
        4, ge=1, le=20, description="tries per request within one pass, with back-off between"
    )
    backoff_min_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(300.0, gt=0, description="longest wait between passes")
    local_quota_mb: float = Field(
        0.0,
        ge=0,
        description="keep at most this many MB of originals on the device, deleting the "
        "oldest already-synced ones; 0 = keep all",
    )
    presign_expiry_s: int = Field(
        3600, ge=60, le=7 * 86400, description="life of /images/{id} redirects to S3"
    )

    @model_validator(mode="after")
    def _consistent(self) -> S3Config:
        if bool(self.access_key_id) != bool(self.secret_access_key.get_secret_value()):
            raise ValueError("access_key_id and secret_access_key: give both or neither")
        if self.profile and self.access_key_id:
            raise ValueError("profile and access_key_id: give one")
        if self.backoff_min_s > self.backoff_max_s:
            raise ValueError("backoff_min_s is above backoff_max_s")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.bucket)

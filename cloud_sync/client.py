"""The boto3 client, and what an error from it means for the queue.

Retries are ours, not botocore's: botocore would retry a 500 inside one call and hide it,
while we want to count attempts, back off with jitter across calls, and tell an outage (wait,
keep everything) from a refusal that will not mend by itself (403, no such bucket: say so once,
and still keep everything).
"""

from __future__ import annotations

from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ResponseStreamingError,
)

from cloud_sync.config import S3Config

Kind = Literal["retryable", "fatal", "record"]

# Codes worth another try: the server was busy, or the body was damaged on the way.
RETRYABLE_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "BadDigest",
        "IncompleteBody",
        "XAmzContentSHA256Mismatch",
    }
)
# Codes that stop the whole queue until someone fixes the account, the key or the bucket.
FATAL_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "InvalidBucketName",
        "AuthorizationHeaderMalformed",
        "PermanentRedirect",
        "AccountProblem",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidToken",
        "InvalidClientTokenId",
    }
)


class SyncError(Exception):
    """A failed S3 call, classified. `retryable`: network, 5xx, throttling. `fatal`: the
    credentials or the bucket are wrong, nothing will go until they are fixed. `record`: this
    one object cannot be sent (it is set aside; the rest go on)."""

    def __init__(self, kind: Kind, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.reason = reason or message
        """The cause without the object (an error code, an exception's type): the same
        trouble on a thousand objects is one log line."""


def error_code(e: ClientError) -> tuple[str, int]:
    err = e.response.get("Error", {})
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return str(err.get("Code", "")), status


def classify(e: BaseException, what: str) -> SyncError:
    """`what` names the call and object, e.g. `PUT s3://b/k`: it leads the log line."""
    if isinstance(e, SyncError):
        return e
    if isinstance(e, ClientError):
        code, status = error_code(e)
        msg = e.response.get("Error", {}).get("Message") or ""
        text = f"{what}: {code or status} {msg}".rstrip()
        reason = f"{code or status}"
        if code in RETRYABLE_CODES:  # first: a skewed clock is a 403 that mends itself
            return SyncError("retryable", text, reason)
        if code in FATAL_CODES or status in (401, 403, 501):
            return SyncError("fatal", text, reason)
        if status >= 500 or status == 429 or status == 0:
            return SyncError("retryable", text, reason)
        return SyncError("record", text, reason)
    reason = type(e).__name__
    if isinstance(e, NoCredentialsError | PartialCredentialsError):
        return SyncError("fatal", f"{what}: {e} (set s3.access_key_id or the AWS_* variables)")
    if isinstance(e, ConnectionError | HTTPClientError | ResponseStreamingError):
        return SyncError("retryable", f"{what}: {reason}: {e}", reason)
    if isinstance(e, BotoCoreError):
        return SyncError("fatal", f"{what}: {reason}: {e}", reason)
    if isinstance(e, OSError):
        return SyncError("record", f"{what}: cannot read the local file: {e}")
    return SyncError("record", f"{what}: {type(e).__name__}: {e}")


def make_client(cfg: S3Config) -> Any:
    """A client for `cfg`: our retries only, checksums only where the API requires them (most
    S3-compatible servers do not know the newer CRC headers); Content-MD5 is ours to send."""
    try:
        session = boto3.session.Session(profile_name=cfg.profile or None)
    except BotoCoreError as e:  # an unknown profile
        raise ValueError(f"s3.profile: {e}") from None
    config = Config(
        region_name=cfg.region,
        signature_version="s3v4",
        s3={"addressing_style": cfg.addressing_style},
        retries={"total_max_attempts": 1},
        connect_timeout=cfg.connect_timeout_s,
        read_timeout=cfg.read_timeout_s,
        max_pool_connections=max(10, cfg.concurrency * 2),
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.client(
        "s3",
        endpoint_url=cfg.endpoint_url or None,
        aws_access_key_id=cfg.access_key_id or None,
        aws_secret_access_key=cfg.secret_access_key.get_secret_value() or None,
        config=config,
    )


def where(cfg: S3Config) -> str:
    """`s3://bucket (endpoint)`, for log lines."""
    return f"s3://{cfg.bucket} ({cfg.endpoint_url or 'AWS ' + cfg.region})"

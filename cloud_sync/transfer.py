"""One object to S3, verified: Content-MD5 on every PUT and part (the server refuses a body
that does not match), then for an original a HEAD that must show our size, our MD5 ETag and
our sha256 metadata before anyone may call it synced.

Idempotent: an object already there with the same content is not sent again. Where the server
knows conditional writes, a single PUT carries `If-None-Match: *` and a 412 means "already
there" (checked by HEAD); where it answers NotImplemented (OpenStack Swift), we HEAD first and
PUT only when needed. Large objects go multipart; an upload cut off (by an outage or a kill -9)
is resumed from the parts already stored, whose ETags are checked against ours.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from botocore.exceptions import ClientError

from cloud_sync.client import SyncError, classify, error_code
from cloud_sync.config import MIB, S3Config
from cloud_sync.throttle import RateLimiter

log = logging.getLogger("s3e.sync")
T = TypeVar("T")
Outcome = Literal["uploaded", "present"]


@dataclass
class Blob:
    """What to put at `key`: a local file (an original) or bytes (a sidecar)."""

    key: str
    content_type: str
    path: Path | None = None
    data: bytes | None = None
    sha256: str = ""
    """Hex digest, sent as metadata and checked on HEAD; the id, for an original."""

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]

    def read(self, offset: int = 0, length: int = -1) -> bytes:
        if self.data is not None:
            return self.data[offset : None if length < 0 else offset + length]
        with open(self.path, "rb") as f:  # type: ignore[arg-type]
            f.seek(offset)
            return f.read(length)


def _etag_is_md5(response: dict[str, Any]) -> bool:
    """With KMS or customer-provided keys an ETag is not the MD5 of the bytes; size, sha256
    and the Content-MD5 the server checked on the way in still hold."""
    kms = str(response.get("ServerSideEncryption", "")).startswith("aws:kms")
    return not kms and not response.get("SSECustomerAlgorithm")


def _md5(data: bytes) -> tuple[str, str]:
    """(hex, base64) MD5: the hex is the ETag a server gives back, the base64 the header."""
    d = hashlib.md5(data).digest()
    return d.hex(), base64.b64encode(d).decode()


class Uploader:
    def __init__(
        self,
        client: Any,
        cfg: S3Config,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.client, self.cfg, self.bucket = client, cfg, cfg.bucket
        self.limiter = limiter
        self.stopping = threading.Event()
        """Set at shutdown: no new request starts, back-off waits end at once."""
        self.conditional: bool | None = None
        """Does the server honour If-None-Match? None until the first answer says."""
        self.resumable: dict[str, str] = {}
        """key -> upload id of multipart uploads to take up again."""
        self._lock = threading.Lock()
        self._probe = threading.Lock()
        self._parts = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="s3-part")
        """Parts of one large object go `concurrency` at a time (a pool of their own: the
        objects' pool waits on them)."""

    # -- calls, with our retries -------------------------------------------------------------
    def call(self, what: str, fn: Callable[..., T], attempts: int = 0, **kw: Any) -> T:
        """`fn(**kw)`, tried `attempts` (default `cfg.attempts`) times while the failure is
        retryable, with exponential back-off and full jitter between tries."""
        attempts = attempts or self.cfg.attempts
        for attempt in range(1, attempts + 1):
            if self.stopping.is_set():
                raise SyncError("retryable", f"{what}: stopping", "stopping")
            try:
                return fn(**kw)
            except ClientError as e:
                if error_code(e)[0] in (
                    "PreconditionFailed",
                    "NotImplemented",
                    "404",
                    "NoSuchKey",
                    "NotFound",
                    "NoSuchUpload",
                ):
                    raise  # answers, not failures: the caller decides
                err = classify(e, what)
            except Exception as e:
                err = classify(e, what)
            if err.kind != "retryable" or attempt == attempts:
                raise err
            self._pause(attempt, err)
        raise AssertionError("unreachable")

    def _pause(self, attempt: int, err: SyncError) -> None:
        """Exponential back-off with full jitter, so a fleet coming back does not retry in
        step."""
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_min_s * 2 ** (attempt - 1))
        pause = random.uniform(0, cap)
        log.debug("%s (attempt %d, again in %.2fs)", err, attempt, pause)
        self.stopping.wait(pause)

    @contextmanager
    def _throttled(self, n: int) -> Iterator[None]:
        """The cap, taken per request body before it goes (botocore reads a body twice over
        plain HTTP, once to sign it, so counting reads would count double), and given back
        if the request fails."""
        if self.limiter is None:
            yield
            return
        self.limiter.take(n)
        try:
            yield
        except BaseException:
            self.limiter.refund(n)
            raise

    def _extra(self, blob: Blob) -> dict[str, Any]:
        extra: dict[str, Any] = {"ContentType": blob.content_type}
        if blob.sha256:
            extra["Metadata"] = {"sha256": blob.sha256}
        if self.cfg.storage_class:
            extra["StorageClass"] = self.cfg.storage_class
        return extra

    def head(self, key: str, before: bool = False) -> dict[str, Any] | None:
        """The object's headers, or None if it is not there. `before` an upload, a 403 counts
        as not there (S3 answers 403 for a missing key to a key that may not list the
        bucket), and one try is enough: the PUT that follows says what is really wrong."""
        where = f"HEAD s3://{self.bucket}/{key}"
        try:
            return self.call(
                where,
                self.client.head_object,
                attempts=1 if before else 0,
                Bucket=self.bucket,
                Key=key,
            )
        except ClientError as e:
            status = error_code(e)[1]
            if status == 404 or (before and status == 403):
                return None
            raise classify(e, where) from None
        except SyncError as e:
            if before and e.kind == "fatal" and e.reason == "403":
                return None
            raise

    def _matches(self, head: dict[str, Any] | None, blob: Blob, etag: str) -> str:
        """Empty when the object at the key is ours; otherwise what differs."""
        if head is None:
            return "not there"
        if int(head.get("ContentLength", -1)) != blob.size:
            return f"size {head.get('ContentLength')} != {blob.size}"
        got = str(head.get("ETag", "")).strip('"')
        if etag and got and _etag_is_md5(head) and got != etag:
            return f"ETag {got} != {etag}"
        theirs = head.get("Metadata", {}).get("sha256")
        if blob.sha256 and theirs and theirs != blob.sha256:
            return f"sha256 {theirs[:12]} != {blob.sha256[:12]}"
        return ""

    # -- one object --------------------------------------------------------------------------
    def put(self, blob: Blob) -> Outcome:
        """Make `blob` be at its key, verified. The key names its content, so an object there
        with our size and hash is taken as ours without sending anything. A retry looks first
        (HEAD): a PUT whose answer was lost may well have landed."""
        if blob.size >= self.cfg.multipart_threshold_mb * MIB:
            return self._put_multipart(blob)
        data = blob.read()
        tries = itertools.count()
        return self.call(
            f"PUT s3://{self.bucket}/{blob.key}",
            lambda: self._put_once(blob, data, look=next(tries) > 0),
        )

    def put_document(self, blob: Blob) -> None:
        """A small object that may be replaced (a sidecar): one PUT with Content-MD5, and the
        ETag the server answers must be our MD5. No HEAD: the server has just hashed these
        very bytes, and sending them twice is harmless."""
        data = blob.read()
        etag, md5 = _md5(data)
        where = f"PUT s3://{self.bucket}/{blob.key}"
        with self._throttled(len(data)):
            got = self.call(
                where,
                self.client.put_object,
                Bucket=self.bucket,
                Key=blob.key,
                Body=data,
                ContentMD5=md5,
                **self._extra(blob),
            )
        if _etag_is_md5(got) and str(got.get("ETag", "")).strip('"') != etag:
            raise SyncError(
                "retryable",
                f"{where}: the server stored other bytes (ETag {got.get('ETag')} != {etag})",
                "ETag mismatch",
            )

    def _put_once(self, blob: Blob, data: bytes, look: bool) -> Outcome:
        etag, md5 = _md5(data)
        kw = {"Bucket": self.bucket, "Key": blob.key, "ContentMD5": md5, **self._extra(blob)}
        try:
            if self.conditional is None and not look:
                with self._probe:  # the first answer tells: the others wait for it, rather
                    if self.conditional is None:  # than send their bodies to a 501
                        return self._put_if_absent(blob, data, etag, kw)
            if self.conditional and not look:
                return self._put_if_absent(blob, data, etag, kw)
            if not self._matches(self.head(blob.key, before=True), blob, etag):
                return "present"
            self._send_put(data, kw)
        except SyncError:
            raise
        except Exception as e:
            raise classify(e, f"PUT s3://{self.bucket}/{blob.key}") from None
        return self._verify(blob, etag, "uploaded")

    def _put_if_absent(self, blob: Blob, data: bytes, etag: str, kw: dict[str, Any]) -> Outcome:
        """A PUT with If-None-Match: a 412 means the key is taken (by our bytes, we check);
        a 501 means the server does not do this, and we HEAD before each PUT from now on."""
        try:
            self._send_put(data, {**kw, "IfNoneMatch": "*"})
            self.conditional = True
        except ClientError as e:
            code = error_code(e)[0]
            if code == "PreconditionFailed":
                self.conditional = True
                differs = self._matches(self.head(blob.key), blob, etag)
                if not differs:
                    return "present"
                log.warning(
                    "s3://%s/%s holds other bytes (%s): replacing them",
                    self.bucket,
                    blob.key,
                    differs,
                )
            elif code == "NotImplemented":
                log.info(
                    "s3://%s: no conditional PUT here; a HEAD before each PUT instead", self.bucket
                )
                self.conditional = False
                if not self._matches(self.head(blob.key, before=True), blob, etag):
                    return "present"
            else:
                raise
            self._send_put(data, kw)
        return self._verify(blob, etag, "uploaded")

    def _send_put(self, data: bytes, kw: dict[str, Any]) -> None:
        with self._throttled(len(data)):
            self.client.put_object(Body=data, **kw)

    def _verify(self, blob: Blob, etag: str, outcome: Outcome) -> Outcome:
        differs = self._matches(self.head(blob.key), blob, etag)
        if differs:
            raise SyncError(
                "retryable",
                f"s3://{self.bucket}/{blob.key}: after upload, {differs}",
                "verification failed",
            )
        return outcome

    # -- multipart ---------------------------------------------------------------------------
    def _put_multipart(self, blob: Blob) -> Outcome:
        size, part = blob.size, self.cfg.part_size_mb * MIB
        n = (size + part - 1) // part
        digests = [hashlib.md5(blob.read(i * part, part)).digest() for i in range(n)]
        etag = hashlib.md5(b"".join(digests)).hexdigest() + f"-{n}"
        if not self._matches(self.head(blob.key, before=True), blob, etag):
            with self._lock:
                stale = self.resumable.pop(blob.key, None)
            if stale:
                self._abort(blob.key, stale)
            return "present"
        where = f"multipart PUT s3://{self.bucket}/{blob.key}"
        upload_id, have = self._resume(blob.key)
        if upload_id is None:
            created = self.call(
                where,
                self.client.create_multipart_upload,
                Bucket=self.bucket,
                Key=blob.key,
                **self._extra(blob),
            )
            upload_id = str(created["UploadId"])
        with self._lock:
            self.resumable[blob.key] = upload_id  # until completed: a failure resumes it

        def send(i: int) -> str:
            data = blob.read(i * part, part)
            with self._throttled(len(data)):
                got = self.call(
                    f"{where} part {i + 1}/{n}",
                    self.client.upload_part,
                    Bucket=self.bucket,
                    Key=blob.key,
                    UploadId=upload_id,
                    PartNumber=i + 1,
                    Body=data,
                    ContentMD5=base64.b64encode(digests[i]).decode(),
                )
            return str(got["ETag"])

        etags = {i: e for i, e in have.items() if e.strip('"') == digests[i - 1].hex()}
        futures = {i: self._parts.submit(send, i - 1) for i in range(1, n + 1) if i not in etags}
        try:
            for i, future in futures.items():
                etags[i] = future.result()
            parts = [{"PartNumber": i, "ETag": etags[i]} for i in range(1, n + 1)]
            self.call(
                where,
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=blob.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except ClientError as e:
            if error_code(e)[0] == "NoSuchUpload":  # completed (its answer lost), or aborted
                with self._lock:
                    self.resumable.pop(blob.key, None)
                if not self._matches(self.head(blob.key), blob, etag):
                    return "present"
                raise SyncError(
                    "retryable", f"{where}: the upload was aborted", "upload aborted"
                ) from None
            raise classify(e, where) from None
        finally:
            for f in futures.values():  # one part failed: the others stop here, not later
                f.cancel()
        with self._lock:
            self.resumable.pop(blob.key, None)
        return self._verify(blob, etag, "uploaded")

    def close(self) -> None:
        self._parts.shutdown(wait=False, cancel_futures=True)

    def _resume(self, key: str) -> tuple[str | None, dict[int, str]]:
        """An earlier upload of `key` and its parts (number -> ETag), or (None, {}). A part
        is reused when its ETag is our MD5 of it (with KMS, never: all are sent again)."""
        with self._lock:
            upload_id = self.resumable.get(key)
        if upload_id is None:
            return None, {}
        have: dict[int, str] = {}
        try:
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
            for page in pages:
                for p in page.get("Parts", []):
                    have[int(p["PartNumber"])] = str(p["ETag"])
        except ClientError as e:
            if error_code(e)[0] != "NoSuchUpload":
                raise classify(e, f"list parts of s3://{self.bucket}/{key}") from None
            with self._lock:
                self.resumable.pop(key, None)
            return None, {}
        log.info(
            "resuming the upload of s3://%s/%s: %d parts already there", self.bucket, key, len(have)
        )
        return upload_id, have

    def _abort(self, key: str, upload_id: str) -> bool:
        """Best effort: an upload left behind costs storage, not correctness; the next start
        tries again. Whether it is gone."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as e:
            if error_code(e)[0] == "NoSuchUpload":
                return True
            log.warning(
                "cannot abort the stale upload of s3://%s/%s: %s",
                self.bucket,
                key,
                classify(e, "abort"),
            )
            return False
        except Exception as e:
            log.warning("cannot abort the stale upload of s3://%s/%s: %s", self.bucket, key, e)
            return False
        return True

    def sweep(self, prefix: str, wanted: Callable[[str], bool]) -> tuple[int, int]:
        """Look at the multipart uploads left under `prefix` (by a crash, an outage): those of
        keys still to sync are kept to resume, the others aborted. (kept, aborted)."""
        kept = aborted = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for u in page.get("Uploads", []):
                    key, uid = str(u["Key"]), str(u["UploadId"])
                    with self._lock:
                        known = self.resumable.get(key)
                    if wanted(key) and known in (None, uid):
                        with self._lock:
                            self.resumable[key] = uid
                        kept += 1
                    elif self._abort(key, uid):
                        aborted += 1
        except Exception as e:
            raise classify(e, f"list uploads in s3://{self.bucket}/{prefix}") from None
        return kept, aborted

"""`POST /images`: an upload, raw or multipart, size-capped while it streams, refused unless a
browser would have had to ask first (so no other site's page can upload)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncGenerator
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from edge.api.bodies import CLOSE, read_body
from edge.api.context import ApiContext, context
from edge.capture.base import printable
from edge.ingest.imaging import DecodeBusyError, ImageRejectedError
from edge.ingest.ingestor import IngestClosedError

log = logging.getLogger("s3e.http")
router = APIRouter()
Ctx = Annotated[ApiContext, Depends(context)]
UPLOAD_KEY = "capture.upload.max_bytes"


async def _file_part(request: Request, body: bytes, limit: int, name: str) -> tuple[bytes, str]:
    """The first file part of a multipart body already read (and size-checked) in full."""

    async def replay() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, replay(), max_files=1, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise HTTPException(400, f"bad multipart body: {e.message}") from None
    try:
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if not files:
            raise HTTPException(400, "multipart body holds no file part")
        return await files[0].read(), files[0].filename or name
    finally:
        await form.close()


SIMPLE_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
"""Body types a browser sends cross-site without asking first (CORS "simple" requests)."""


def require_preflighted(request: Request) -> None:
    """An upload must be one a browser would preflight, which this server never grants:
    a non-simple type (image/*, application/octet-stream) or the `X-S3E-Request` header."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if "x-s3e-request" in request.headers:
        return
    if kind and kind not in SIMPLE_TYPES:
        return
    raise HTTPException(
        415,
        f"send the image with Content-Type image/* or application/octet-stream, or add the "
        f"header X-S3E-Request: 1 (got {kind or 'no Content-Type'}); a form post from "
        "another site's page must not be able to upload",
        CLOSE,
    )


@router.post("/images", status_code=201, summary="Upload an image (raw body or multipart)")
async def upload(request: Request, ctx: Ctx) -> JSONResponse:
    if ctx.ingestor is None or not ctx.cfg.capture.upload.enabled:
        raise HTTPException(404, "uploads are off (capture.upload.enabled = false)", CLOSE)
    require_preflighted(request)
    limit = ctx.cfg.capture.upload.max_bytes
    name = printable(unquote(request.headers.get("x-filename", "")))  # URL-encoded: any name
    # room for multipart headers and boundaries
    data = await read_body(request, limit + 64 * 1024, ctx.cfg.http, UPLOAD_KEY)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        data, name = await _file_part(request, data, limit, name)
    if len(data) > limit:
        raise HTTPException(413, f"file is over the {limit} byte limit ({UPLOAD_KEY})")
    try:
        got = await run_in_threadpool(ctx.ingestor.ingest, data, "upload", name)
    except ImageRejectedError as e:
        ctx.metrics.errors.labels(e.kind).inc()
        log.warning("rejected upload %s: %s (%s)", name or "(unnamed)", e.reason, e.kind)
        raise HTTPException(400, f"{e.kind}: {e.reason}") from None
    except IngestClosedError:
        raise HTTPException(503, "the daemon is stopping; try again later") from None
    except DecodeBusyError as e:
        raise HTTPException(503, f"{e}; try again shortly", {"Retry-After": "2"}) from None
    except (OSError, sqlite3.Error) as e:
        log.error("cannot store upload %s: %s", name, e)
        raise HTTPException(507, f"the device cannot store the image now: {e}") from None
    return JSONResponse(
        {"id": got.id, "duplicate": not got.new, "url": f"/images/{got.id}"},
        status_code=201 if got.new else 200,
    )

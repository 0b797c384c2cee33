"""The local HTTP endpoint (FastAPI): search, images and their derived views, uploads, health
and metrics. Listens on 127.0.0.1 unless told otherwise; who may ask what is decided in
`edge.http_guard` (hosts, origins, the token or its session cookie).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import io
import logging
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from edge.capture.base import printable
from edge.config import EdgeConfig, HttpConfig
from edge.http_guard import SESSION_COOKIE, Guard, authorized, session_value
from edge.imaging import DecodeBusyError, ImageRejectedError, attention_png, media_type
from edge.index import Filters, QuerySyntaxError, SearchIndex
from edge.metrics import Metrics
from edge.pipeline import IngestClosedError, Ingestor
from edge.similar import LatentNeighbours
from edge.store import Record, Store

log = logging.getLogger("s3e.http")
PAGE = Path(__file__).parent / "static" / "index.html"


@dataclass
class ApiContext:
    """What the routes read; parts left None answer 503 (a search-only app in benchmarks)."""

    cfg: EdgeConfig
    index: SearchIndex
    metrics: Metrics
    health: Callable[[], dict[str, Any]]
    store: Store | None = None
    ingestor: Ingestor | None = None
    neighbours: LatentNeighbours | None = None
    presign: Callable[[Record], str | None] | None = None
    """A time-limited S3 URL for a synced original (cloud sync on), else None."""


def _when(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{name}: not an ISO 8601 date or time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


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
    )


async def read_body(request: Request, limit: int, cfg: HttpConfig) -> bytes:
    """The body, counted as it arrives (chunked or not): over `limit` is a 413, a body that
    stalls for `body_idle_s` or takes longer than `body_timeout_s` a 408."""
    buf = io.BytesIO()
    deadline = time.monotonic() + cfg.body_timeout_s
    chunks = request.stream().__aiter__()
    while True:
        wait = min(cfg.body_idle_s, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), max(wait, 0.001))
        except StopAsyncIteration:
            return buf.getvalue()
        except TimeoutError:
            raise HTTPException(408, "the request body arrived too slowly") from None
        buf.write(chunk)
        if buf.tell() > limit:  # room for multipart headers and boundaries
            raise HTTPException(413, f"body is over the {limit} byte limit")


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="S3E edge",
        version="1",
        description="Local search over the images this device has analysed.",
    )
    token = ctx.cfg.http.token.get_secret_value()
    app.middleware("http")(Guard(ctx.cfg.http))

    def store() -> Store:
        if ctx.store is None:
            raise HTTPException(503, "no record store in this app")
        return ctx.store

    def record_or_404(rid: str) -> Any:
        rec = store().get(rid)
        if rec is None:
            raise HTTPException(404, f"no image with id {rid}")
        return rec

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    @app.post("/login", status_code=204, summary="Trade the token for a session cookie")
    async def login(request: Request) -> Response:
        try:
            given = str((await request.json()).get("token", ""))
        except (ValueError, AttributeError):
            raise HTTPException(400, 'send {"token": "..."} as JSON') from None
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "wrong token")
        response = Response(status_code=204)
        response.set_cookie(SESSION_COOKIE, session_value(token), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
        return response

    @app.post("/logout", status_code=204, summary="Forget the session cookie")
    def logout() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
        return response

    @app.get("/healthz", summary="Liveness; details (placement, queues) need the token if set")
    def healthz(request: Request) -> dict[str, Any]:
        health = ctx.health()
        return health if authorized(request, token) else {"status": health["status"]}

    @app.get("/metrics", summary="Prometheus text format")
    def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/search", summary="Search captions and labels (Tantivy query syntax)")
    def search(
        q: str = "",
        label: str | None = None,
        since: str | None = None,
        until: str | None = None,
        source: str | None = None,
        min_anomaly: float | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> dict[str, Any]:
        filters = Filters(label, source, _when(since, "since"), _when(until, "until"), min_anomaly)
        try:
            total, hits, facets = ctx.index.search(q, filters, limit, offset)
        except QuerySyntaxError as e:
            raise HTTPException(400, f"query syntax error in {q!r}: {e}") from None
        return {
            "query": q,
            "total": total,
            "offset": offset,
            "results": [
                {**h.__dict__, "thumbnail_url": f"/images/{h.id}/thumb", "url": f"/images/{h.id}"}
                for h in hits
            ],
            "facets": {"labels": facets},
        }

    @app.post("/images", status_code=201, summary="Upload an image (raw body or multipart)")
    async def upload(request: Request) -> JSONResponse:
        if ctx.ingestor is None or not ctx.cfg.capture.upload.enabled:
            raise HTTPException(404, "uploads are off (capture.upload.enabled = false)")
        require_preflighted(request)
        limit = ctx.cfg.capture.upload.max_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            raise HTTPException(413, f"body of {declared} bytes is over the {limit} byte limit")
        name = printable(request.headers.get("x-filename", ""))
        data = await read_body(request, limit + 64 * 1024, ctx.cfg.http)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            data, name = await _file_part(request, data, limit, name)
        if len(data) > limit:
            raise HTTPException(413, f"file is over the {limit} byte limit")
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

    @app.get("/records/{rid}", summary="The whole record of one image")
    def record(rid: str) -> dict[str, Any]:
        return dict(record_or_404(rid).summary())

    @app.get(
        "/images/{rid}",
        summary="The original image (a redirect to S3 once it is kept there alone)",
        response_model=None,
        responses={307: {"description": "the original is in S3 only: a presigned URL"}},
    )
    def original(rid: str) -> FileResponse | RedirectResponse:
        rec = record_or_404(rid)
        path = store().original_path(rid, rec.ext)
        if path.exists():
            return FileResponse(path, media_type=media_type(rec.ext))
        url = ctx.presign(rec) if ctx.presign is not None else None
        if url is None:
            raise HTTPException(410, f"the original of {rid} is no longer on this device")
        return RedirectResponse(url, status_code=307)

    def derived(rid: str, kind: str, media: str) -> FileResponse:
        record_or_404(rid)
        path = store().derived_path(rid, kind)
        if not path.exists():
            raise HTTPException(404, f"no {kind} for {rid} yet (not analysed?)")
        return FileResponse(path, media_type=media)

    @app.get("/images/{rid}/thumb", summary="A JPEG thumbnail")
    def thumb(rid: str) -> FileResponse:
        return derived(rid, "thumb", "image/jpeg")

    @app.get("/images/{rid}/mask", summary="The segmentation mask (palette PNG, class ids)")
    def mask(rid: str) -> FileResponse:
        return derived(rid, "mask", "image/png")

    @app.get("/images/{rid}/attention", summary="Where the captioner looked for one word")
    def attention(rid: str, word: str = "0") -> Response:
        got = store().attention(rid)
        if got is None:
            raise HTTPException(404, f"no analysed image with id {rid}")
        words, grids, _ = got
        if word.isascii() and word.isdigit() and len(word) <= 4:
            k = int(word)
        elif word in words:
            k = words.index(word)
        else:
            raise HTTPException(
                404, f"word {printable(word, 40)!r} is not in the caption {' '.join(words)!r}"
            )
        if not 0 <= k < len(words):
            raise HTTPException(404, f"word index {k} out of range (caption has {len(words)})")
        thumb_bytes = store().derived_path(rid, "thumb").read_bytes()
        png = attention_png(thumb_bytes, grids[k])
        return Response(png, media_type="image/png", headers={"X-Word": words[k]})

    @app.get("/records/{rid}/attention", summary="Each caption word's attention, as numbers")
    def attention_json(rid: str) -> dict[str, Any]:
        """`map`: G*G weights, row-major, top row first, summing to 1 over the regions;
        `visual`: how much the word relied on the image (1 - the sentinel's share)."""
        got = store().attention(rid)
        if got is None:
            raise HTTPException(404, f"no analysed image with id {rid}")
        words, grids, visual = got
        out = []
        for w, g, v in zip(words, grids, visual, strict=True):
            total = float(g.sum())
            flat = (g / total if total > 0 else g).reshape(-1)
            out.append({"word": w, "map": [round(float(x), 5) for x in flat], "visual": v})
        return {"grid": int(grids.shape[-1]) if len(grids) else 0, "words": out}

    @app.get("/images/{rid}/similar", summary="Nearest images in the VAE latent space")
    def similar(rid: str, k: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
        if ctx.neighbours is None:
            raise HTTPException(503, "no latent index in this app")
        got = ctx.neighbours.query(rid, k)
        if got is None:
            raise HTTPException(404, f"no analysed image with id {rid}")
        return {
            "id": rid,
            "similar": [
                {"id": i, "distance": d, "thumbnail_url": f"/images/{i}/thumb"} for i, d in got
            ],
        }

    return app

"""`s3e-fleet serve`: the device's `/search` API and page over the archive. Stateless (every
answer comes from the table, thumbnails and originals from S3 through presigned URLs), so
several replicas can serve one table (sessions are each replica's own: a client signed in on
one is asked again by another).

The fleet answers for every device's images, so it stands behind the device's own guard
(`edge.api.guard`, `edge.api.auth`, `edge.api.session`) on the same `[http]` keys: the Host
and Origin checks, the token or a session, the throttle on wrong tokens, the limits on
connections, requests and bodies. FastAPI's `/docs` and `/redoc` are off (they load their
scripts from a CDN) and `/openapi.json` wants the token, as on the device."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from cloud_sync.client import make_client
from edge.api.app import guarded_app
from edge.api.auth import Auth, may_read
from edge.api.page import page_router
from edge.search.engine import SearchRequest
from edge.search.http import answer, search_request
from fleet.config import FleetConfig
from fleet.search import FleetSearch

LINK_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private"}
"""On a redirect to an original or thumbnail, as on the device's image answers: the link is as
private as the image (no shared cache keeps it), and no browser guesses a type."""


def create_app(cfg: FleetConfig, search: FleetSearch, auth: Auth | None = None) -> FastAPI:
    """The routes behind the guard. `auth`: the token in force, sessions and throttle; built
    from `cfg.http` when not given (which reads `http.token_file`, raising `TokenFileError`)."""
    auth = auth if auth is not None else Auth(cfg.http)
    app = guarded_app(cfg.http, auth, "S3E fleet", "1", "One search over every device's images.")
    s3 = make_client(cfg.s3)
    endpoint = urlsplit(cfg.s3.endpoint_url or f"https://{cfg.s3.bucket}.s3.amazonaws.com")
    app.include_router(page_router(image_origin=f"{endpoint.scheme}://{endpoint.netloc}"))

    def presigned(result_id: str, column: str) -> RedirectResponse:
        try:
            r = search.row(result_id, [column])
        except ValueError as e:
            raise HTTPException(404, str(e)) from None
        if r is None or not r.get(column):
            raise HTTPException(404, f"no {column.removesuffix('_key')} for {result_id}")
        where = {"Bucket": cfg.s3.bucket, "Key": r[column]}
        url = s3.generate_presigned_url(
            "get_object", Params=where, ExpiresIn=cfg.s3.presign_expiry_s
        )
        return RedirectResponse(url, status_code=307, headers=LINK_HEADERS)

    def one(result_id: str, got: Any) -> Any:
        if got is None:
            raise HTTPException(404, f"no image {result_id} (or none of its vectors here)")
        return got

    @app.get("/search", summary="Find images of every device: keyword, semantic or both")
    def search_route(req: Annotated[SearchRequest, Depends(search_request)]) -> JSONResponse:
        return JSONResponse(answer(req, search.search(req)))

    @app.get("/images/{result_id}", summary="The original, from S3")
    def original(result_id: str) -> RedirectResponse:
        return presigned(result_id, "original_key")

    @app.get("/images/{result_id}/thumb", summary="The thumbnail, from S3")
    def thumb(result_id: str) -> RedirectResponse:
        return presigned(result_id, "thumbnail_key")

    @app.get("/images/{result_id}/match", summary="Where each query word matched")
    def match(result_id: str, q: str = "") -> dict[str, Any]:
        if not q.strip() or len(q) > 512:
            raise HTTPException(400, "q: give the query (1 to 512 characters)")
        return {"id": result_id, "query": q, **one(result_id, _safe(search.match, result_id, q))}

    @app.get("/images/{result_id}/similar", summary="Nearest images by VAE latent")
    def similar(result_id: str, k: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
        got = one(result_id, _safe(search.similar, result_id, k))
        return {
            "id": result_id,
            "similar": [{**g, "thumbnail_url": f"/images/{g['id']}/thumb"} for g in got],
        }

    @app.get("/records/{result_id}", summary="The device's record of one image")
    def record(result_id: str) -> dict[str, Any]:
        return dict(one(result_id, _safe(search.record, result_id)))

    @app.get("/healthz", summary="Liveness; rows and the query bundle need the token if set")
    def healthz(request: Request) -> dict[str, Any]:
        if not may_read(request):
            return {"status": "ok"}
        b = search.bundle
        return {
            "status": "ok",
            "index_documents": search.archive.count(),
            "bundle": {"name": b.name, "version": b.version, "precision": b.precision},
            "archive": search.archive.uri,
            "time": dt.datetime.now(dt.UTC).isoformat(),
        }

    return app


def _safe(fn: Any, result_id: str, *args: Any) -> Any:
    try:
        return fn(result_id, *args)
    except ValueError as e:
        raise HTTPException(404, str(e)) from None

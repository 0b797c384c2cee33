"""The session (`/login`, `/logout`), health, metrics and the admin routes."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from edge.analysis.pool import SwapInProgressError
from edge.analysis.swap import BundleRefusedError
from edge.api.context import ApiContext, context
from edge.api.guard import SESSION_COOKIE, authorized, session_value

router = APIRouter()
Ctx = Annotated[ApiContext, Depends(context)]


@router.post("/login", status_code=204, summary="Trade the token for a session cookie")
async def login(request: Request, ctx: Ctx) -> Response:
    token = ctx.cfg.http.token.get_secret_value()
    try:
        given = str((await request.json()).get("token", ""))
    except (ValueError, AttributeError):
        raise HTTPException(400, 'send {"token": "..."} as JSON') from None
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "wrong token")
    response = Response(status_code=204)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", status_code=204, summary="Forget the session cookie")
def logout() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
    return response


@router.get("/healthz", summary="Liveness; details (placement, queues) need the token if set")
def healthz(request: Request, ctx: Ctx) -> dict[str, Any]:
    health = ctx.health()
    token = ctx.cfg.http.token.get_secret_value()
    return health if authorized(request, token) else {"status": health["status"]}


@router.get("/metrics", summary="Prometheus text format")
def metrics(ctx: Ctx) -> Response:
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


@router.post(
    "/admin/bundle",
    summary="Switch to another model bundle without a restart",
    responses={
        400: {"description": "the bundle is refused (the reason says why)"},
        409: {"description": "another swap is in progress"},
    },
)
async def swap_bundle(request: Request, ctx: Ctx) -> dict[str, Any]:
    """`{"bundle": "<shipped name or folder>"}`: verified (hashes, models loaded, a test
    inference) before anything changes; new captures then go to it, and older records are
    re-analysed in the background (progress in /healthz)."""
    if ctx.swap is None:
        raise HTTPException(503, "no analysis in this app")
    try:
        ref = (await request.json()).get("bundle")
    except (ValueError, AttributeError):
        ref = None
    if not isinstance(ref, str) or not ref:
        raise HTTPException(400, 'send {"bundle": "<shipped name or folder>"} as JSON')
    try:
        return await run_in_threadpool(ctx.swap, ref)
    except SwapInProgressError as e:
        raise HTTPException(409, str(e)) from None
    except BundleRefusedError as e:
        raise HTTPException(400, f"bundle refused, the running one stays: {e}") from None

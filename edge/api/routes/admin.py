"""Health, metrics and the admin routes (the session routes are `edge.api.session`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from edge.analysis.pool import SwapInProgressError
from edge.analysis.swap import BundleRefusedError
from edge.api.auth import may_read
from edge.api.bodies import json_field, read_json
from edge.api.context import ApiContext, context

router = APIRouter()
Ctx = Annotated[ApiContext, Depends(context)]
BUNDLE_EXAMPLE = '{"bundle": "<shipped name or folder>"}'


@router.get("/healthz", summary="Liveness; details (placement, queues) need the token if set")
def healthz(request: Request, ctx: Ctx) -> dict[str, Any]:
    health = ctx.health()
    return health if may_read(request) else {"status": health["status"]}


@router.get("/metrics", summary="Prometheus text format")
def metrics(ctx: Ctx) -> Response:
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


@router.post(
    "/admin/bundle",
    summary="Switch to another model bundle without a restart",
    responses={
        400: {"description": "the bundle is refused (the reason says why)"},
        409: {"description": "another swap is in progress"},
        413: {"description": "body over http.max_json_bytes"},
    },
)
async def swap_bundle(request: Request, ctx: Ctx) -> dict[str, Any]:
    """`{"bundle": "<shipped name or folder>"}`: verified (hashes, models loaded, a test
    inference) before anything changes; new captures then go to it, and older records are
    re-analysed in the background (progress in /healthz)."""
    if ctx.swap is None:
        raise HTTPException(503, "no analysis in this app")
    ref = json_field(
        await read_json(request, ctx.cfg.http, BUNDLE_EXAMPLE), "bundle", BUNDLE_EXAMPLE
    )
    try:
        return await run_in_threadpool(ctx.swap, ref)
    except SwapInProgressError as e:
        raise HTTPException(409, str(e)) from None
    except BundleRefusedError as e:
        raise HTTPException(400, f"bundle refused, the running one stays: {e}") from None

"""What every route reads: one typed context, built by the daemon before the HTTP server
starts, and the dependency that hands it to a route."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from edge.config import EdgeConfig
from edge.ingest.ingestor import Ingestor
from edge.metrics import Metrics
from edge.parts import Hooks
from edge.search.engine import SearchEngine
from edge.search.semantic import Encoders
from edge.search.vectors import VectorIndex
from edge.store.records import Record
from edge.store.store import AmbiguousIdError, Store


@dataclass(frozen=True)
class ApiContext:
    """The daemon's parts as the routes see them; `ingestor` and `swap` are None in an app
    that only searches (benchmarks), whose upload and admin routes answer 503."""

    cfg: EdgeConfig
    store: Store
    search: SearchEngine
    encoders: Encoders
    """The running bundle's query encoder, for one image's word maps."""
    latents: tuple[VectorIndex, ...]
    """The nearest-neighbour indexes of the latents ("similar images"): the bundle's, and
    its catch-all's where the device routes between two."""
    metrics: Metrics
    health: Callable[[], dict[str, Any]]
    hooks: Hooks
    ingestor: Ingestor | None = None
    swap: Callable[[str], dict[str, Any]] | None = None
    """Switch the running bundle (`edge.analysis.swap.BundleSwapper.swap`)."""

    def record(self, rid: str) -> Record:
        rec = self.store.get(rid)
        if rec is None:
            raise HTTPException(404, f"no image with id {rid}")
        return rec


async def full_id(rid: str, request: Request) -> str:
    """The image id of the path: the id itself, or the one a prefix of 8 or more hex
    characters names (the logs print 12); a prefix several ids begin with is a 409 naming
    them. An unknown id passes on: the route answers its own 404."""
    if len(rid) == 64:
        return rid
    ctx: ApiContext = request.app.state.ctx
    try:
        return await run_in_threadpool(ctx.store.resolve, rid)
    except AmbiguousIdError as e:
        shown = ", ".join(m[:16] for m in e.matches[:5])
        raise HTTPException(
            409,
            f"{rid} begins {'more than 5' if len(e.matches) > 5 else len(e.matches)} "
            f"image ids ({shown}...): give more of it",
        ) from None
    except KeyError:
        return rid


Rid = Annotated[str, Depends(full_id)]
"""A route's image id, prefixes resolved."""


async def context(request: Request) -> ApiContext:
    """The dependency every route takes: a coroutine, as FastAPI runs a plain function's
    dependency in its thread pool, a hop before the route's own."""
    ctx: ApiContext = request.app.state.ctx
    return ctx

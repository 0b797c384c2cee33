"""The local HTTP endpoint (FastAPI): the app factory and what every route reads.

Routes live in `edge.api.routes`, one module per concern (search, images and records, uploads,
the session and admin routes); who may ask what is decided in `edge.api.guard` (hosts,
origins, the token or its session cookie). Listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from edge.api.guard import Guard
from edge.config import EdgeConfig
from edge.ingest.ingestor import Ingestor
from edge.metrics import Metrics
from edge.parts import Hooks
from edge.search.hybrid import HybridSearch
from edge.search.index import SearchIndex
from edge.search.semantic import SemanticSearch
from edge.search.vectors import VectorIndex
from edge.store.records import Record
from edge.store.store import Store


@dataclass
class ApiContext:
    """What the routes read; parts left None answer 503 (a search-only app in benchmarks)."""

    cfg: EdgeConfig
    index: SearchIndex
    metrics: Metrics
    health: Callable[[], dict[str, Any]]
    store: Store | None = None
    ingestor: Ingestor | None = None
    latent: VectorIndex | None = None
    """The VAE latents' nearest-neighbour index ("similar images")."""
    semantic: SemanticSearch | None = None
    hooks: Hooks = field(default_factory=Hooks)
    swap: Callable[[str], dict[str, Any]] | None = None
    """Switch the running bundle (`edge.analysis.swap.BundleSwapper.swap`)."""

    @property
    def search(self) -> HybridSearch:
        return HybridSearch(self.index, self.semantic)

    def need_store(self) -> Store:
        if self.store is None:
            raise HTTPException(503, "no record store in this app")
        return self.store

    def record(self, rid: str) -> Record:
        rec = self.need_store().get(rid)
        if rec is None:
            raise HTTPException(404, f"no image with id {rid}")
        return rec


async def context(request: Request) -> ApiContext:
    """The dependency every route takes: a coroutine, as FastAPI runs a plain function's
    dependency in its thread pool, a hop before the route's own (a keyword `/search` over
    HTTP at 100k records: 2.2 against 2.4 ms of server CPU, p99 4.3 against 4.8 ms)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


def create_app(ctx: ApiContext) -> FastAPI:
    from edge.api.routes import admin, images, search, uploads

    app = FastAPI(
        title="S3E edge",
        version="2",
        description="Local search over the images this device has analysed.",
        # The daemon reports through its own /metrics and logs; FastAPI's OpenTelemetry
        # bridge otherwise asks for the global providers on every request (~5% of a
        # /similar request's CPU at 1M records, py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ctx = ctx
    app.add_middleware(Guard, cfg=ctx.cfg.http)
    for module in (admin, search, images, uploads):
        app.include_router(module.router)
    return app

"""The local HTTP endpoint (FastAPI): the app factory.

Routes live in `edge.api.routes`, one module per concern (search, images and records, uploads,
the session and admin routes), and the page in `edge.api.page`; who may ask what is decided
in `edge.api.guard` (hosts, origins, the token or its session cookie). Listens on 127.0.0.1
unless told otherwise.
"""

from __future__ import annotations

from fastapi import FastAPI

from edge.api.context import ApiContext
from edge.api.guard import Guard
from edge.api.page import page_router
from edge.api.routes import admin, images, search, uploads
from edge.config import HttpConfig


def build_app(cfg: HttpConfig) -> FastAPI:
    """The routes behind the guard, with no context yet (enough for the OpenAPI schema)."""
    app = FastAPI(
        title="S3E edge",
        version="2",
        description="Local search over the images this device has analysed.",
        # The daemon reports through its own /metrics and logs; FastAPI's OpenTelemetry
        # bridge otherwise asks for the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_middleware(Guard, cfg=cfg)
    app.include_router(page_router())
    for module in (admin, search, images, uploads):
        app.include_router(module.router)
    return app


def create_app(ctx: ApiContext) -> FastAPI:
    app = build_app(ctx.cfg.http)
    app.state.ctx = ctx
    return app

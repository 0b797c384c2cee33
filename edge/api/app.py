"""The local HTTP endpoint (FastAPI): the app factory.

Routes live in `edge.api.routes`, one module per concern (search, images and records, uploads,
health and admin), the session routes in `edge.api.session`, and the page in `edge.api.page`;
who may ask what is decided in `edge.api.guard` (hosts, origins, the token or a session, the
throttle on wrong tokens). Listens on 127.0.0.1 unless told otherwise.

FastAPI's `/docs` and `/redoc` are off: they load their script from a CDN, which the page's
promise (nothing from elsewhere, on the device's origin) rules out. `docs/openapi.json` is
the reference, and `/openapi.json` answers behind the token.
"""

from __future__ import annotations

from fastapi import FastAPI

from edge.api.auth import Auth
from edge.api.context import ApiContext
from edge.api.guard import Guard
from edge.api.page import page_router
from edge.api.routes import admin, images, search, uploads
from edge.api.session import session_router
from edge.config import HttpConfig


def guarded_app(cfg: HttpConfig, auth: Auth, title: str, version: str, about: str) -> FastAPI:
    """A FastAPI app behind the guard, with the session routes and no `/docs`: the device's
    and the fleet's alike."""
    app = FastAPI(
        title=title,
        version=version,
        description=about,
        docs_url=None,
        redoc_url=None,
        # The daemon reports through its own /metrics and logs; FastAPI's OpenTelemetry
        # bridge otherwise asks for the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_middleware(Guard, cfg=cfg, auth=auth)
    app.include_router(session_router(auth))
    app.state.auth = auth
    return app


def build_app(cfg: HttpConfig, auth: Auth | None = None) -> FastAPI:
    """The routes behind the guard, with no context yet (enough for the OpenAPI schema).

    `auth`: the token in force, sessions and throttle; built from `cfg` when not given (which
    reads `http.token_file`, raising `TokenFileError`)."""
    auth = auth if auth is not None else Auth(cfg)
    about = "Local search over the images this device has analysed."
    app = guarded_app(cfg, auth, "S3E edge", "2", about)
    app.include_router(page_router())
    for module in (admin, search, images, uploads):
        app.include_router(module.router)
    return app


def create_app(ctx: ApiContext, auth: Auth | None = None) -> FastAPI:
    app = build_app(ctx.cfg.http, auth)
    app.state.ctx = ctx
    return app

"""`POST /login`, `POST /logout` and `GET /session`, for any app that shares an `Auth` with its
`Guard` (the device's, the fleet's).

`/session` lets a page learn whether it must ask for the token before it asks for anything
else, so a page load with a live session, or with no token configured, makes no request that
fails. `/login` reads a small JSON body (`http.max_json_bytes`), and answers a client that must
wait (too many wrong tokens) with 429 and `Retry-After` without looking at its token.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from edge.api.auth import Auth, Verdict, checked, too_many_wrong
from edge.api.bodies import json_field, read_json
from edge.api.throttle import client_key

LOGIN_EXAMPLE = '{"token": "..."}'


class SessionState(BaseModel):
    token_required: bool = Field(description="whether the data routes want the token")
    signed_in: bool = Field(
        description="whether this request carries a live session or the right bearer token"
    )
    expires_in_s: int | None = Field(
        None, description="seconds the session cookie has left; null without one"
    )


def session_router(auth: Auth) -> APIRouter:
    """The session routes over `auth` (the same object the app's `Guard` holds)."""
    router = APIRouter()

    @router.post(
        "/login",
        status_code=204,
        summary="Trade the token for a session cookie",
        responses={
            400: {"description": "no token is configured, or the body is not the JSON asked"},
            401: {"description": "wrong token"},
            413: {"description": "body over http.max_json_bytes"},
            429: {"description": "too many wrong tokens from this address; see Retry-After"},
        },
    )
    async def login(request: Request) -> Response:
        """`{"token": "..."}`: a new session (HttpOnly, SameSite=Strict cookie, Max-Age
        `http.session_max_age_s`); the session the client held before ends."""
        doc = await read_json(request, auth.cfg, LOGIN_EXAMPLE)
        given = json_field(doc, "token", LOGIN_EXAMPLE)
        if not auth.token_required:
            raise HTTPException(400, "no token is configured (http.token): nothing to sign in to")
        # From here to the verdict nothing awaits: concurrent guesses are counted one by one.
        verdict = auth.try_token(client_key(request.scope), given)
        if verdict.verdict is Verdict.THROTTLED:
            raise HTTPException(429, *too_many_wrong(verdict.retry_after_s))
        if verdict.verdict is Verdict.WRONG:
            raise HTTPException(401, "wrong token")
        response = Response(status_code=204)
        auth.start_session(request, response)
        return response

    @router.post("/logout", status_code=204, summary="End this session")
    def logout(request: Request) -> Response:
        """The session ends on the server too: its cookie, replayed, is refused."""
        response = Response(status_code=204)
        auth.end_session(request, response)
        return response

    @router.get("/session", summary="Whether a token is needed and this client is signed in")
    def session(request: Request) -> SessionState:
        """Open to all, and never a 401: the page asks it first."""
        got = checked(request) or auth.check(request)
        left = got.session_left_s
        return SessionState(
            token_required=auth.token_required,
            signed_in=got.verdict is Verdict.SIGNED_IN,
            expires_in_s=None if left is None else int(left),
        )

    return router

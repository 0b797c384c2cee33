"""Reading a request's body within limits, for every route that reads one (uploads, JSON).

A body is never read past its limit: a declared `Content-Length` over it is refused before a
byte is read, and a body without one (chunked) is counted as it arrives and refused the moment
it passes the limit. Either way the answer is a 413 that closes the connection, since the rest
of the body may still be on its way and must not be read as the next request. A body that
stalls or dawdles gets a 408 (`http.body_idle_s`, `http.body_timeout_s`)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

from fastapi import HTTPException, Request

from edge.config import HttpConfig

CLOSE = {"Connection": "close"}
"""On an answer given before the request's body is read: the rest of the body may still be on
its way, and must not be read as the next request on a kept-alive connection."""


def refuse_declared(request: Request, limit: int, key: str) -> None:
    """A 413 for a declared `Content-Length` over `limit` (`key` names the config key)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(
            413, f"body of {declared} bytes is over the {limit} byte limit ({key})", CLOSE
        )


async def read_body(request: Request, limit: int, cfg: HttpConfig, key: str) -> bytes:
    """The body, counted as it arrives (chunked or not): over `limit` is a 413 (`key` names
    the config key that sets it), a body that stalls for `body_idle_s` or takes longer than
    `body_timeout_s` a 408."""
    refuse_declared(request, limit, key)
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
            raise HTTPException(408, "the request body arrived too slowly", CLOSE) from None
        buf.write(chunk)
        if buf.tell() > limit:
            raise HTTPException(413, f"body is over the {limit} byte limit ({key})", CLOSE)


async def read_json(request: Request, cfg: HttpConfig, example: str) -> Any:
    """A JSON body of at most `http.max_json_bytes`; `example` shows the caller what to send
    when the body is not JSON (a 400)."""
    body = await read_body(request, cfg.max_json_bytes, cfg, "http.max_json_bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise HTTPException(400, f"send {example} as JSON") from None


def json_field(doc: Any, name: str, example: str) -> str:
    """A non-empty string field of a JSON object, else a 400 showing `example`."""
    value = doc.get(name) if isinstance(doc, dict) else None
    if not isinstance(value, str) or not value:
        raise HTTPException(400, f"send {example} as JSON")
    return value

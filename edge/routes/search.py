"""`/search`: Tantivy query syntax over captions and labels, with filters and facets."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from edge.api import ApiContext, context
from edge.index import Filters, QuerySyntaxError

router = APIRouter()
Ctx = Annotated[ApiContext, Depends(context)]


def when(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{name}: not an ISO 8601 date or time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@router.get("/search", summary="Search captions and labels (Tantivy query syntax)")
def search(
    ctx: Ctx,
    q: str = "",
    label: str | None = None,
    since: str | None = None,
    until: str | None = None,
    source: str | None = None,
    min_anomaly: float | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> dict[str, Any]:
    filters = Filters(label, source, when(since, "since"), when(until, "until"), min_anomaly)
    try:
        total, hits, facets = ctx.index.search(q, filters, limit, offset)
    except QuerySyntaxError as e:
        raise HTTPException(400, f"query syntax error in {q[:200]!r}: {e}") from None
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

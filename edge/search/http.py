"""`/search` as HTTP, the same on the device and in the fleet: its query parameters
(`search_request`) and its answer (`answer`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query

from edge.search.engine import Filters, Fusion, Mode, Result, SearchRequest
from edge.search.query import MAX_QUERY_CHARS

MAX_OFFSET = 100_000


def when(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 date or time (UTC unless it says otherwise), or a 400 naming `name`."""
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{name}: not an ISO 8601 date or time: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


async def search_request(
    q: str = "",
    mode: Annotated[
        Mode,
        Query(
            description="keyword: Tantivy syntax over captions and labels; semantic: the "
            "query's words against the images' regions; hybrid: both, fused"
        ),
    ] = "hybrid",
    fusion: Annotated[
        Fusion, Query(description="hybrid: reciprocal-rank fusion, or a mix of the two scores")
    ] = "rrf",
    facets: bool = True,
    sort: Annotated[
        Literal["relevance", "recent"], Query(description="recent: newest first (keyword mode)")
    ] = "relevance",
    label: str | None = None,
    since: str | None = None,
    until: str | None = None,
    source: str | None = None,
    device: Annotated[str | None, Query(description="only this device's images")] = None,
    min_anomaly: float | None = None,
    modality: Annotated[str | None, Query(description="a DICOM's modality (CR, DX...)")] = None,
    body_part: Annotated[str | None, Query(description="a DICOM's body part (CHEST...)")] = None,
    view_position: Annotated[str | None, Query(description="a DICOM's view (PA, AP...)")] = None,
    manufacturer: Annotated[str | None, Query(description="a DICOM's manufacturer")] = None,
    study_since: Annotated[
        str | None, Query(description="a DICOM's study date, from (YYYY-MM-DD or YYYYMMDD)")
    ] = None,
    study_until: Annotated[str | None, Query(description="a DICOM's study date, to")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> SearchRequest:
    """The request from its query parameters (a coroutine: FastAPI runs a plain function's
    dependency in its thread pool, a hop before the route's own)."""
    if len(q) > MAX_QUERY_CHARS:
        raise HTTPException(400, f"q: at most {MAX_QUERY_CHARS} characters")
    filters = Filters(
        label,
        source,
        device,
        when(since, "since"),
        when(until, "until"),
        min_anomaly,
        modality,
        body_part,
        view_position,
        manufacturer,
        when(study_since, "study_since"),
        when(study_until, "study_until"),
    )
    return SearchRequest(q, filters, mode, fusion, limit, offset, facets, sort == "recent")


def answer(req: SearchRequest, res: Result) -> dict[str, Any]:
    """The JSON answer: each result says why it matched (`match.keyword`: its rank, score and
    the query words its caption holds; `match.semantic`: its rank, score and each query
    word's); `message` names unknown words, corrections, or why nothing matched."""
    facets = {"labels": res.facets.get("labels", {}), "sources": res.facets.get("source", {})}
    if "device" in res.facets:
        facets["devices"] = res.facets["device"]
    return {
        "query": req.q,
        "mode": res.mode,
        "total": res.total,
        "offset": req.offset,
        "results": [
            {**h.__dict__, "thumbnail_url": f"/images/{h.id}/thumb", "url": f"/images/{h.id}"}
            for h in res.hits
        ],
        "facets": facets,
        "message": res.message,
        "corrected": res.corrected,
        "unknown": res.unknown,
        "related": res.related,
    }

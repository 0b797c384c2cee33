"""`/search`: keyword (Tantivy query syntax, typo tolerant), semantic, or both fused
(`edge.search.engine`), with filters and facets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse

from edge.api.context import ApiContext, context
from edge.search.engine import QuerySyntaxError, SearchRequest
from edge.search.http import answer, search_request

router = APIRouter()
Ctx = Annotated[ApiContext, Depends(context)]
Request = Annotated[SearchRequest, Depends(search_request)]


@router.get(
    "/search",
    summary="Find images by what is in them: keyword, semantic or both",
    response_model=dict[str, Any],
)
def search(ctx: Ctx, req: Request) -> JSONResponse:
    """Each result says why it matched (`match.keyword`: its rank, BM25 score and the query
    words its caption holds; `match.semantic`: its rank, score and each query word's);
    `message` names unknown words, corrections, or why nothing matched. `facets`: label
    counts over every keyword match (over the fused results in the other modes)."""
    try:
        res = ctx.search.search(req)
    except QuerySyntaxError as e:
        raise HTTPException(400, f"query syntax error in {req.q[:200]!r}: {e}") from None
    # Answered as JSON as is: FastAPI's encoder would walk every value first, and this
    # answer holds only JSON types.
    return JSONResponse(answer(req, res))

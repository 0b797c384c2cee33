"""One image's views: the original, its thumbnail and derived files, its record, each caption
word's attention and each query word's match (as a PNG over the thumbnail, or as numbers),
and similar images."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from edge.analysis import views
from edge.analysis.outputs import OUTPUTS, classify, faces
from edge.analysis.outputs.caption import attention_maps
from edge.api.context import ApiContext, Rid, context
from edge.capture.base import printable
from edge.ingest.imaging import (
    DecodeBusyError,
    ImageRejectedError,
    attention_png,
    decode,
    display_png,
    media_type,
)
from edge.search import semantic
from edge.search.vectors import VectorIndex
from edge.store.store import Store

router = APIRouter()
Ctx = Annotated[ApiContext, Depends(context)]
FILES = {kind: spec for cls in OUTPUTS.values() for kind, spec in cls.files.items()}
"""Derived file kind -> (suffix, media type), from the output plug-ins (e.g. "mask")."""
FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private"}
"""On every image answer: the browser takes the declared type, never a guess from the bytes
(an upload is only ever shown as the image it was decoded as), and no shared cache keeps a
copy of what the token guards."""
DICOM = "application/dicom"
VIEWED = {"dcm": DICOM, "heic": "image/heic"}
"""Originals a browser cannot show (extension -> their type): `/images/{id}` answers them as a
PNG rendition unless the client asks for the type itself (Accept)."""
VIEW_SIDE = 2048
"""A rendition for the browser is at most this wide."""


@router.get("/records/{rid}", summary="The whole record of one image")
def record(rid: Rid, ctx: Ctx) -> dict[str, Any]:
    return views.summary(ctx.record(rid))


@router.get(
    "/images/{rid}",
    summary="The original image (a redirect to S3 once it is kept there alone); a DICOM or a "
    "HEIC as a PNG a browser shows, unless asked for with Accept: application/dicom or "
    "image/heic",
    response_model=None,
    responses={307: {"description": "the original is in S3 only: a presigned URL"}},
)
def original(rid: Rid, ctx: Ctx, request: Request) -> FileResponse | RedirectResponse:
    rec = ctx.record(rid)
    path = ctx.store.original_path(rid, rec.ext)
    wanted = request.headers.get("accept", "")
    if path.exists() and rec.ext in VIEWED and VIEWED[rec.ext] not in wanted:
        view = _view(ctx, rec.id, path)
        return FileResponse(view, media_type="image/png", headers=FILE_HEADERS)
    if path.exists():
        return FileResponse(path, media_type=media_type(rec.ext), headers=FILE_HEADERS)
    url = ctx.hooks.original_url(rec) if ctx.hooks.original_url is not None else None
    if url is None:
        raise HTTPException(410, f"the original of {rid} is no longer on this device")
    return RedirectResponse(url, status_code=307)


def _view(ctx: ApiContext, rid: str, path: Path) -> Path:
    """A DICOM as a viewer shows it (a HEIC as it is), at most VIEW_SIDE wide, made at the
    first asking and kept beside the thumbnail. The stored file is the one accepted
    (de-identified unless identity is kept), so it is read as it is: de-identifying it again
    would refuse a burned-in image a site keeps identity for. Decoding it shares the ingest's
    memory budget: first views asked for at once wait their turn as uploads do (a 503 when the
    budget stays full)."""
    view = ctx.store.derived_path(rid, "view.png")
    if not view.exists():
        lim = ctx.cfg.limits
        budget = ctx.ingestor.budget if ctx.ingestor is not None else None
        try:
            img = decode(
                path.read_bytes(),
                lim.max_pixels,
                lim.max_side,
                VIEW_SIDE // 2,
                budget,
                keep_identity=True,
            )
        except ImageRejectedError as e:
            raise HTTPException(
                500, f"the stored original of {rid} no longer decodes: {e}"
            ) from None
        except DecodeBusyError as e:
            raise HTTPException(503, f"{e}; try again shortly", {"Retry-After": "2"}) from None
        ctx.store.write_atomic(view, display_png(img.image, VIEW_SIDE))
    return view


def _derived(ctx: ApiContext, rid: str, suffix: str, media: str) -> FileResponse:
    ctx.record(rid)
    path = ctx.store.derived_path(rid, suffix)
    if not path.exists():
        raise HTTPException(404, f"no {suffix} for {rid} yet (not analysed?)")
    return FileResponse(path, media_type=media, headers=FILE_HEADERS)


@router.get("/images/{rid}/thumb", summary="A JPEG thumbnail")
def thumb(rid: Rid, ctx: Ctx) -> FileResponse:
    return _derived(ctx, rid, "thumb.jpg", "image/jpeg")


@router.get("/images/{rid}/mask", summary="The segmentation mask (palette PNG, class ids)")
def mask(rid: Rid, ctx: Ctx) -> FileResponse:
    return _derived(ctx, rid, *FILES["mask"])


def _caption_attention(ctx: ApiContext, rid: str) -> tuple[list[str], np.ndarray, list[float]]:
    rec = ctx.record(rid)
    cap = rec.output("caption")
    blob = ctx.store.blob(rid, "attention")
    if cap is None or blob is None:
        raise HTTPException(404, f"no caption attention for {rid} (not analysed?)")
    words = list(cap["words"])
    return words, attention_maps(blob, len(words), int(cap["grid"])), list(cap["visual"])


@router.get("/images/{rid}/attention", summary="Where the captioner looked for one word")
def attention(rid: Rid, ctx: Ctx, word: str = "0") -> Response:
    words, grids, _ = _caption_attention(ctx, rid)
    if word.isascii() and word.isdigit() and len(word) <= 4:
        k = int(word)
    elif word in words:
        k = words.index(word)
    else:
        raise HTTPException(
            404, f"word {printable(word, 40)!r} is not in the caption {' '.join(words)!r}"
        )
    if not 0 <= k < len(words):
        raise HTTPException(404, f"word index {k} out of range (caption has {len(words)})")
    thumb_bytes = ctx.store.derived_path(rid, "thumb.jpg").read_bytes()
    return Response(
        attention_png(thumb_bytes, grids[k]),
        media_type="image/png",
        headers={**FILE_HEADERS, "X-Word": words[k]},
    )


@router.get("/records/{rid}/attention", summary="Each caption word's attention, as numbers")
def attention_json(rid: Rid, ctx: Ctx) -> dict[str, Any]:
    """`map`: G*G weights, row-major, top row first, summing to 1 over the regions;
    `visual`: how much the word relied on the image (1 - the sentinel's share)."""
    words, grids, visual = _caption_attention(ctx, rid)
    out = []
    for w, g, v in zip(words, grids, visual, strict=True):
        total = float(g.sum())
        flat = (g / total if total > 0 else g).reshape(-1)
        out.append({"word": w, "map": [round(float(x), 5) for x in flat], "visual": v})
    return {"grid": int(grids.shape[-1]) if len(grids) else 0, "words": out}


@router.get(
    "/images/{rid}/similar",
    summary="Nearest images in the VAE latent space",
    response_model=dict[str, Any],
)
async def similar(rid: Rid, ctx: Ctx, k: Annotated[int, Query(ge=1, le=100)] = 10) -> JSONResponse:
    """Approximate nearest neighbours (HNSW; recall@10 against brute force in
    `bench/search.py`) among the images the same running bundle analysed."""
    store, latents = ctx.store, ctx.latents
    # Answered here, on the event loop, when what it reads is free and current, without the
    # hop to the thread pool. Otherwise in the pool, where waiting on a commit, the index's
    # save or a catch-up stalls no other request.
    with contextlib.ExitStack() as held:
        free = (store.held_if_free(), *(index.held_if_free() for index in latents))
        if all(held.enter_context(h) for h in free) and all(i.current() for i in latents):
            return _similar(store, latents, rid, k)
    return await run_in_threadpool(_similar, store, latents, rid, k, True)


def _similar(
    store: Store, latents: tuple[VectorIndex, ...], rid: str, k: int, refresh: bool = False
) -> JSONResponse:
    """Neighbours in the index that holds the image's latent. `refresh`: first read what the
    store analysed past the indexes' cursors (on the event loop they were just found
    current: nothing to read)."""
    if refresh:
        for index in latents:
            index.refresh()
    seq = store.seq_of(rid)
    found = [(i, v) for i in latents if seq is not None and (v := i.get(seq)) is not None]
    if not found:
        raise HTTPException(404, f"no image with id {rid} analysed by the running bundle")
    latent, vector = found[0]
    near = [(s, d) for s, d in latent.search(vector, k + 1) if s != seq][:k]
    ids = store.ids_of([s for s, _ in near]) if near else {}
    # only JSON types: answered as is, without FastAPI's validation and encoder walk
    return JSONResponse(
        {
            "id": rid,
            "similar": [
                {
                    "id": ids[s],
                    "distance": round(float(np.sqrt(max(d, 0.0))), 5),
                    "thumbnail_url": f"/images/{ids[s]}/thumb",
                }
                for s, d in near
                if s in ids
            ],
        }
    )


def _match(ctx: ApiContext, rid: str, q: str) -> dict[str, Any]:
    rec = ctx.record(rid)
    if not q.strip() or len(q) > 512:
        raise HTTPException(400, "q: give the query (1 to 512 characters)")
    enc, blob = ctx.encoders(), ctx.store.blob(rid, "regions")
    got = semantic.match(enc, q, blob) if enc is not None and blob is not None else None
    labelled = rec.output(classify.ClassifyOutput.key)
    maps = ctx.store.blob(rid, "label_maps") if got is None and labelled is not None else None
    if labelled is not None and maps is not None:
        table = ctx.search.related()
        related = (lambda w: [lab for lab, _ in table.lookup(w)[1]]) if table else (lambda _: [])
        got = classify.match(classify.ClassifyFields.model_validate(labelled), maps, q, related)
    people = rec.output(faces.FacesOutput.key)
    if people is not None:
        got = _with_faces(got, faces.match(faces.FacesFields.model_validate(people), q))
    if got is None:
        raise HTTPException(
            404,
            f"no semantic vectors or label maps for {rid} (not analysed by a bundle with "
            "semantic search or a classifier?)",
        )
    return got


def _with_faces(got: dict[str, Any] | None, found: list[dict[str, Any]]) -> dict[str, Any]:
    """The words the faces answer ("person") in place of those another output left
    unknown; the faces' maps are on the classifier's grid."""
    if got is None:
        return {"grid": faces.MAP_GRID, "words": found, "unknown": [], "corrected": {}}
    if not found or got["grid"] != faces.MAP_GRID:
        return got
    words = {w["word"] for w in found}
    unknown = [w for w in got["unknown"] if w not in words]
    return {**got, "words": [*got["words"], *found], "unknown": unknown}


@router.get("/images/{rid}/match", summary="Where each query word matched on the image")
def match(rid: Rid, ctx: Ctx, q: str = "", word: str | None = None) -> Any:
    """`words[k].map`: G*G weights, row-major, top row first, summing to 1 (a softmax of the
    word's similarity over the regions; for a classifier's label, its classes' activation
    map); `score`: the word's best similarity (the label's score). With `word`
    (an index, or the word itself): that word's map as a PNG over the thumbnail."""
    got = _match(ctx, rid, q)
    if word is None:
        return {"id": rid, "query": q, **got}
    names = [w["word"] for w in got["words"]]
    if word.isascii() and word.isdigit() and len(word) <= 3 and int(word) < len(names):
        k = int(word)
    elif word in names:
        k = names.index(word)
    else:
        raise HTTPException(404, f"word {printable(word, 40)!r} is not a searched word of {names}")
    grid = np.asarray(got["words"][k]["map"], np.float32).reshape(got["grid"], got["grid"])
    thumb_bytes = ctx.store.derived_path(rid, "thumb.jpg").read_bytes()
    return Response(
        attention_png(thumb_bytes, grid),
        media_type="image/png",
        headers={**FILE_HEADERS, "X-Word": names[k]},
    )

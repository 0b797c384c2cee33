"""The search page and its own files, served by the device and the fleet alike under a
Content-Security-Policy that lets it run only its own files: no inline script, nothing from
elsewhere (the fleet adds the S3 origin its images are redirected to)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import HTMLResponse

PAGE = Path(__file__).resolve().parent / "static" / "index.html"
STATIC = {p.name: p for p in PAGE.parent.iterdir() if p.suffix in (".js", ".css", ".svg")}
MEDIA = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page_router(image_origin: str = "") -> APIRouter:
    """`/` and `/static/{name}`; `image_origin`: another origin the page may show images
    from."""
    headers = dict(SECURITY_HEADERS)
    if image_origin:
        csp = headers["Content-Security-Policy"]
        headers["Content-Security-Policy"] = csp.replace(
            "img-src 'self'", f"img-src 'self' {image_origin}"
        )
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(), headers=headers)

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        path = STATIC.get(name)
        if path is None:
            raise HTTPException(404, "no such file")
        return Response(
            path.read_bytes(),
            media_type=MEDIA[path.suffix],
            headers={**headers, "Cache-Control": "no-cache"},
        )

    return router

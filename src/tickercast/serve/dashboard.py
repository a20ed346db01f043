"""The dashboard: ``GET /`` serves one static page that draws everything from the public API.

No build step and nothing fetched from elsewhere at run time: the page, its script and style, and
the vendored chart library (uPlot, MIT, from the npm registry) ship inside the package under
``serve/static``. Assets are served from a fixed list of known files, so no request path ever
becomes a file path; a Content-Security-Policy restricts the page to this origin.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException, Request, Response

router = APIRouter(include_in_schema=False)

# Every file the page may load, with its media type; anything else under /static is a 404.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    "vendor/uplot/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.min.css": "text/css; charset=utf-8",
    "vendor/uplot/LICENSE": "text/plain; charset=utf-8",
}
INDEX = "index.html"

# The page talks only to this origin; the chart library sets inline styles, hence 'unsafe-inline'
# for styles (never for scripts).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


@cache
def _read(name: str) -> tuple[bytes, str]:
    """Return a packaged static file's bytes and a strong ETag for them."""
    body = resources.files("tickercast.serve").joinpath("static", *name.split("/")).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _respond(request: Request, name: str, media_type: str, cache_control: str) -> Response:
    body, etag = _read(name)
    headers = {
        "ETag": etag,
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


@router.get("/")
def dashboard(request: Request) -> Response:
    """Serve the dashboard page: forecast chart, recent changes, importances and the model card."""
    response = _respond(request, INDEX, "text/html; charset=utf-8", "no-cache")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/static/{name:path}")
def static_asset(name: str, request: Request) -> Response:
    """Serve one of the dashboard's scripts, style sheets or icons."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail="no such dashboard asset")
    # Revalidate cheaply with the ETag: a new release replaces the files under the same names.
    return _respond(request, name, media_type, "no-cache")

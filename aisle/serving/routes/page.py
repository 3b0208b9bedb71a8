"""The search page: ``GET /`` and its assets (``serving/page/``), plain HTML, CSS and JS
shipped in the package, so the page works offline with no build step.

Left out of the OpenAPI document: it is no part of the API's contract, and the page itself
uses only the documented ``GET /search``, ``GET /fields`` (its filter controls) and
``GET /autocomplete``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import Response

from aisle.serving.deps import ConfigDep

router = APIRouter(include_in_schema=False)

# Everything the page loads comes from this service: no CDN, no fonts, no inline script.
# (``data:`` is the blank favicon, so the browser does not ask for /favicon.ico.)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # a new version of the package is picked up on reload
}
ASSETS = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}


@cache
def _read(name: str) -> str:
    return (files("aisle.serving") / "page" / name).read_text(encoding="utf-8")


@router.get("/")
async def page(config: ConfigDep) -> Response:
    # The one thing the page needs from the config: whether to ask /autocomplete at all
    # (without an artifact it answers 404, and the search box is a plain one).
    html = _read("index.html").replace(
        "{{autocomplete}}", "on" if config.autocomplete else "off")
    return Response(html, media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/page/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, f"no page asset {name!r}")  # problem details, as any 404
    return Response(_read(name), media_type=ASSETS[name], headers=HEADERS)

"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with their
scripts, styles and icon served by the service itself from the ``fastapi-offline`` wheel
(Swagger UI: Apache-2.0; ReDoc: MIT; the wheel: MIT), so they render with no other host
reachable: no CDN, no web fonts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/static/docs"
# ReDoc's sidebar credit shows a logo from its CDN: the one other host its bundle names.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
NO_IMAGE = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


def _assets_dir() -> Path:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the fastapi-offline wheel (the docs' assets) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def install_docs(app: FastAPI) -> None:
    """Serve the docs pages and their assets (create ``app`` with ``docs_url=None`` and
    ``redoc_url=None``)."""
    assets = _assets_dir()
    redoc_js = (assets / "redoc.standalone.js").read_text(encoding="utf-8")
    redoc_js = redoc_js.replace(REDOC_LOGO, NO_IMAGE)
    openapi_url = app.openapi_url or "/openapi.json"

    # Before the mount, so it is matched first.
    @app.get(f"{ASSETS}/redoc.standalone.js", include_in_schema=False)
    async def redoc_script() -> Response:
        return Response(redoc_js, media_type="text/javascript")

    app.mount(ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            # No badge from validator.swagger.io: nothing leaves the machine.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

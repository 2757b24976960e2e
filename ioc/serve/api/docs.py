"""The API's interactive docs (`/docs`) with every asset served by the API itself.

FastAPI's defaults load Swagger UI and ReDoc from a CDN, so an operations centre without
internet (many are) got a blank page at the first address the demo prints. The assets come
from the `fastapi-offline` package (MIT; Swagger UI 5, which renders the OpenAPI 3.1 that
FastAPI writes), found through importlib so no path is hard-coded. ReDoc is not offered: its
page loads a logo from redocly's CDN whatever it is told.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def serve_docs(app: FastAPI) -> None:
    """Call on an app created with `docs_url=None, redoc_url=None`."""
    static = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")
    title = f"{app.title} – docs"
    openapi = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def _swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi, title=title, oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def _redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

"""Swagger UI served from the API itself.

FastAPI's default /docs loads its JavaScript and CSS from a CDN, which shows a blank page
on an air-gapped site. The ``swagger-ui-py`` package ships the same files (Swagger UI 5,
which reads the OpenAPI 3.1 FastAPI writes).
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/docs-static"
ASSETS = Path(swagger_ui.__file__).parent / "static"


def install_docs(app: FastAPI) -> None:
    """Mount /docs on local assets; call on an app created with ``docs_url=None``."""
    app.mount(STATIC, StaticFiles(directory=ASSETS), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon-32x32.png",
        )

"""``/docs`` without the internet: Swagger UI served from the ``swagger-ui-bundle``
package instead of a public CDN (a data center may have no way out)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse

__all__ = ["add_offline_docs"]

ASSETS = "/docs-assets"
_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def _asset_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def add_offline_docs(app: FastAPI) -> None:
    """Serve ``/docs`` with scripts and styles from the local package."""

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    @app.get(f"{ASSETS}/{{name}}", include_in_schema=False)
    def asset(name: str):
        if name not in _FILES:
            return JSONResponse({"detail": f"no docs asset {name[:60]!r}"}, status_code=404)
        return FileResponse(_asset_dir() / name, media_type=_FILES[name])

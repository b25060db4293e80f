"""The web monitoring panel, served by the coordinator itself on the HTTP port.

The panel is static HTML, CSS and ES modules (no build step) that talk to the REST API with the signed-in
user's bearer token. This module only serves those files: the page at ``/``, its assets under ``/static``
and the app icon at ``/icon.svg``. Every route it adds is exact, so /api, /docs, /openapi.json, /metrics and
/healthz stay with their owners.
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
# The desktop app's icon (assets/icons/app.svg in a source checkout); the panel's own mark otherwise.
APP_ICON = Path(__file__).resolve().parents[2] / "assets" / "icons" / "app.svg"
FALLBACK_ICON = STATIC_DIR / "hivemind.svg"

# The panel needs nothing from another origin and no inline script or style: say so, so an injected
# script cannot run even if one slipped past the DOM-only rendering.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def mount(app: FastAPI) -> None:
    """Add the panel's pages and static files to ``app``."""

    @app.get("/", include_in_schema=False)
    def panel() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)

    @app.get("/icon.svg", include_in_schema=False)
    def icon() -> FileResponse:
        path = APP_ICON if APP_ICON.is_file() else FALLBACK_ICON
        return FileResponse(path, media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})

    # no-cache on the modules too (StaticFiles sends ETags, so a revalidation is cheap): a coordinator
    # upgrade must never leave a browser running yesterday's JavaScript against today's API.
    app.mount("/static", _NoCacheStatic(directory=STATIC_DIR), name="panel-static")


class _NoCacheStatic(StaticFiles):
    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

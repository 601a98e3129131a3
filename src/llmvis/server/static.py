"""Serve the built web app: index.html at / and the hashed files under /assets/, nothing else.

No StaticFiles mount: an explicit allowlist (a flat directory, file names of safe characters,
resolved inside the assets folder) makes directory listing and path traversal impossible by
construction. Without a build, / explains how to make one.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")

MISSING_BUILD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmvis: web app not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>llmvis: the web app is not built</h1>
<p>The API is running (see <a href="/api/health">/api/health</a>), but the browser app has not
been built into <code>src/llmvis/static/</code>.</p>
<p>Run <code>make run</code> from the repository (it builds the web app, then starts the server),
or <code>make web</code> to build it only.</p>
</body></html>
"""


def build_router(static_dir: Path = STATIC_DIR) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    assets = static_dir / "assets"

    @router.get("/")
    def index() -> Response:
        page = static_dir / "index.html"
        if not page.is_file():
            return HTMLResponse(MISSING_BUILD, status_code=503)
        return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})

    @router.get("/assets/{name}")
    def asset(name: str) -> Response:
        if not SAFE_NAME.match(name) or ".." in name:
            raise HTTPException(404, "not found")
        path = (assets / name).resolve()
        if path.parent != assets.resolve() or not path.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})

    return router

"""Wire the dashboard into the API app: its page, its static assets, its helpers and the security headers."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.routing import APIRouter
from fastapi.staticfiles import StaticFiles

from batchq.api.dashboard import helpers
from batchq.api.dashboard.headers import SecurityHeaders

#: The page and its assets, shipped inside the package (no build step; nothing is fetched from elsewhere).
STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Where the dashboard lives on the API.
DASHBOARD_PATH = "/dashboard"

pages = APIRouter(include_in_schema=False)


@pages.get(DASHBOARD_PATH)
@pages.get(f"{DASHBOARD_PATH}/")
async def read_dashboard() -> FileResponse:
    """The dashboard's single page (its routes live after the ``#``)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard from ``app`` and give every response the security headers."""
    app.include_router(pages)
    app.include_router(helpers.router)
    app.mount(f"{DASHBOARD_PATH}/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
    app.add_middleware(SecurityHeaders, dashboard_path=DASHBOARD_PATH)

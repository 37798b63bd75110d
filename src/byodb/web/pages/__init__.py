"""Server-rendered pages (Jinja2 templates, plain JS and CSS under ``web/static``)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from byodb.web.pages import admin, session, workspace
from byodb.web.pages.rendering import static_files

router = APIRouter(include_in_schema=False)
router.include_router(session.router)
router.include_router(workspace.router)
router.include_router(admin.router)


def install_pages(app: FastAPI) -> None:
    """Add the page routes and mount ``/static``."""
    app.include_router(router)
    app.mount("/static", static_files(), name="static")

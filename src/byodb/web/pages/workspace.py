"""The signed-in user's pages: chat workspace, notes, tasks, memories, Settings → Database.

Each content page is rendered with the user's BYOD state. A connected user whose database is
unreachable gets the connection blocker instead of the app (the seeds' ConnectionBlocker);
the blocker's script also takes over whenever a content request answers 503
``byod_unavailable``. Settings → Database and the help page are never blocked: they live on
main and are where the user fixes the problem.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from byodb.instances.fleet.runs import schema_update_under_way
from byodb.services.notices import recent_database_notices
from byodb.web.api.byod import byod_state, new_connections
from byodb.web.auth import Principal
from byodb.web.pages.collections import COLLECTIONS
from byodb.web.pages.rendering import render
from byodb.web.pages.session import page_principal, sign_in_redirect

router = APIRouter(include_in_schema=False)


def is_blocked(state: dict[str, Any]) -> bool:
    """The user's content lives on their database and that database is unreachable."""
    return bool(state["blocked"])


async def _state_for(request: Request, principal: Principal) -> dict[str, Any]:
    config = await request.app.state.runtime.lifecycle.state(principal.user_id)
    return byod_state(config)


async def _content_page(request: Request, template: str, active: str,
                        extra: dict[str, Any] | None = None) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_redirect(request)
    state = await _state_for(request, principal)
    return render(request, template, {"principal": principal, "active": active,
                                      "byod_state": state, "blocked": is_blocked(state),
                                      **(extra or {})})


@router.get("/")
async def workspace(request: Request) -> Response:
    return await _content_page(request, "workspace.html", "chat")


@router.get("/notes")
async def notes(request: Request) -> Response:
    return await _collection(request, "notes")


@router.get("/tasks")
async def tasks(request: Request) -> Response:
    return await _collection(request, "tasks")


@router.get("/memories")
async def memories(request: Request) -> Response:
    return await _collection(request, "memories")


async def _collection(request: Request, slug: str) -> Response:
    collection = COLLECTIONS[slug]
    return await _content_page(request, "collection.html", slug,
                               {"collection": collection,
                                "collection_json": collection.as_json()})


@router.get("/settings")
async def settings_index() -> Response:
    return RedirectResponse("/settings/database", status_code=303)


@router.get("/settings/database")
async def settings_database(request: Request) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_redirect(request)
    state = await _state_for(request, principal)
    refusal = request.app.state.runtime.lifecycle.new_connection_refusal(
        premium=principal.is_premium)
    return render(request, "settings_database.html",
                  {"principal": principal, "active": "settings", "byod_state": state,
                   "new_connections": new_connections(refusal),
                   "schema_updating": await schema_update_under_way(
                       request.app.state.runtime.main, principal.user_id),
                   "notices": await recent_database_notices(request.app.state.runtime.main,
                                                            principal.user_id)})


@router.get("/help/database")
async def help_database(request: Request) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_redirect(request)
    return render(request, "help_database.html",
                  {"principal": principal, "active": "settings"})

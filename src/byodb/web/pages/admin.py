"""The admin dashboard page. The role is checked here, on the server, and again by every
admin API call the page makes; a non-admin gets 403 on both."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from byodb.web.api.admin import fleet_actions
from byodb.web.pages.rendering import render
from byodb.web.pages.session import page_principal, sign_in_redirect

router = APIRouter(include_in_schema=False)


@router.get("/admin")
async def admin_index() -> Response:
    return RedirectResponse("/admin/byod", status_code=303)


@router.get("/admin/byod")
async def admin_byod(request: Request) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_redirect(request)
    if not principal.is_admin:
        return render(request, "error.html",
                      {"principal": principal, "status": 403, "title": "Admins only",
                       "message": "The BYOD dashboard needs the admin role, and your account "
                                  "does not have it."},
                      status_code=403)
    return render(request, "admin_byod.html",
                  {"principal": principal, "active": "admin",
                   "actions": fleet_actions(request.app)})

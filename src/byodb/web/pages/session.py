"""Signing in and out of the web app, and who is signed in on a page request.

Development: a form signs anyone in as any user id (optionally admin) by setting the
``byodb_session`` cookie to a development token. Production: the issuer's JWT arrives in that
cookie or in an ``Authorization`` header (the identity provider's front end puts it there), and
the form here only accepts a pasted token; the development form is refused.

Every form post here passes the same-site check first (``web/same_site.py``): a page on
another origin can neither sign a visitor in to its own account (login CSRF) nor out.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import RedirectResponse, Response

from byodb.errors import ByodbError, Unauthenticated
from byodb.web.auth import (
    MAX_SUBJECT_CHARS,
    SESSION_COOKIE,
    Authenticator,
    Principal,
    issue_dev_token,
    subject_problem,
)
from byodb.web.deps import bearer_token
from byodb.web.pages.rendering import render

router = APIRouter(include_in_schema=False)

SESSION_MAX_AGE_S = 7 * 24 * 3600
MAX_USER_ID_CHARS = MAX_SUBJECT_CHARS


async def page_principal(request: Request) -> Principal | None:
    """The signed-in principal of a page request, or None (pages redirect to sign-in)."""
    authenticator: Authenticator = request.app.state.authenticator
    try:
        principal = await authenticator.verify(bearer_token(request))
    except Unauthenticated:
        return None
    await request.app.state.users.ensure(principal)
    return principal


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def sign_in_redirect(request: Request) -> RedirectResponse:
    """Send a signed-out visitor to sign in, and back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='/')}", status_code=303)


def _cookie_is_secure(request: Request) -> bool:
    """``Secure`` whenever the request came over TLS: the scheme is the connection's, or
    ``X-Forwarded-Proto`` from a proxy in ``BYODB_TRUSTED_PROXIES`` (web/proxies.py runs
    first). Over plain HTTP (development) a Secure cookie would never come back."""
    return request.url.scheme == "https"


def _with_session(request: Request, token: str, destination: str) -> RedirectResponse:
    # HttpOnly: no script reads the token. SameSite=Lax: not sent on other sites' POSTs
    # (the same-site check in web/same_site.py covers sibling subdomains and __session).
    response = RedirectResponse(destination, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_S, httponly=True,
                        samesite="lax", secure=_cookie_is_secure(request), path="/")
    return response


@router.get("/signin")
async def sign_in_page(request: Request,
                       next_: Annotated[str | None, Query(alias="next")] = None) -> Response:
    destination = safe_next(next_)
    if await page_principal(request) is not None:
        return RedirectResponse(destination, status_code=303)
    return render(request, "signin.html", {"next": destination, "error": None,
                                           "user_id": ""})


@router.post("/signin")
async def sign_in(request: Request, user_id: Annotated[str, Form()] = "",
                  admin: Annotated[bool, Form()] = False,
                  premium: Annotated[bool, Form()] = False,
                  next_: Annotated[str, Form(alias="next")] = "/") -> Response:
    """Development sign-in: any user id, optionally with the admin role and premium."""
    destination = safe_next(next_)
    if request.app.state.runtime.settings.is_production:
        return render(request, "signin.html",
                      {"next": destination, "user_id": "",
                       "error": "Development sign-in is turned off in production. Sign in "
                                "with your organisation's identity provider."},
                      status_code=403)
    user_id = user_id.strip()
    if subject_problem(user_id) is not None:  # the same rule as a token's sub
        return render(request, "signin.html",
                      {"next": destination, "user_id": user_id[:MAX_USER_ID_CHARS],
                       "error": f"Enter a user ID of 1 to {MAX_USER_ID_CHARS} characters, "
                                "without control, format or line-separator characters."},
                      status_code=422)
    token = issue_dev_token(request.app.state.runtime.settings, user_id, admin=admin,
                            premium=premium, ttl_s=SESSION_MAX_AGE_S)
    return _with_session(request, token, destination)


@router.post("/signin/token")
async def sign_in_with_token(request: Request, token: Annotated[str, Form()] = "",
                             next_: Annotated[str, Form(alias="next")] = "/") -> Response:
    """Production sign-in: keep an issuer-signed JWT (verified first) as the session."""
    destination = safe_next(next_)
    authenticator: Authenticator = request.app.state.authenticator
    try:
        principal = await authenticator.verify(token.strip() or None)
    except ByodbError as exc:
        return render(request, "signin.html",
                      {"next": destination, "user_id": "", "error": exc.message},
                      status_code=401)
    await request.app.state.users.ensure(principal)
    return _with_session(request, token.strip(), destination)


@router.post("/signout")
async def sign_out(request: Request) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=_cookie_is_secure(request))
    response.headers["Clear-Site-Data"] = '"cache"'
    return response

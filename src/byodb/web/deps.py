"""FastAPI dependencies: the process runtime and the signed-in principal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from byodb.runtime import Runtime
from byodb.web.auth import SESSION_COOKIE, Authenticator, Principal


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# Clerk's front end keeps the session JWT in this cookie on the app's domain.
CLERK_SESSION_COOKIE = "__session"


@dataclass(frozen=True)
class Credential:
    """The JWT a request carries and where it came from. A cookie is sent by the browser on
    its own, also for requests another site starts, so cookie credentials are what the
    same-site check (``web/same_site.py``) guards; a bearer header is never ambient."""

    token: str
    from_cookie: bool


def request_credential(request: Request) -> Credential | None:
    """The bearer header, else our session cookie, else Clerk's; None when there is none.

    Reads headers only, so the same-site middleware can call it before the body is read.
    """
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return Credential(header[7:].strip(), from_cookie=False)
    cookie = request.cookies.get(SESSION_COOKIE) or request.cookies.get(CLERK_SESSION_COOKIE)
    return Credential(cookie, from_cookie=True) if cookie else None


def bearer_token(request: Request) -> str | None:
    """The JWT of the request (see :func:`request_credential`)."""
    credential = request_credential(request)
    return credential.token if credential else None


async def get_principal(request: Request) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.verify(bearer_token(request))
    await request.app.state.users.ensure(principal)
    # Whose request this was, for what runs after the response (web/realtime.py).
    request.state.user_id = principal.user_id
    return principal


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.require_admin()
    return principal


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]

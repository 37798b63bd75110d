"""FastAPI dependencies: the process runtime and the signed-in principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from byodb.runtime import Runtime
from byodb.web.auth import SESSION_COOKIE, Authenticator, Principal


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# Clerk's front end keeps the session JWT in this cookie on the app's domain.
CLERK_SESSION_COOKIE = "__session"


def bearer_token(request: Request) -> str | None:
    """The JWT of the request: the bearer header, else our session cookie, else Clerk's."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(SESSION_COOKIE) or request.cookies.get(CLERK_SESSION_COOKIE)


async def get_principal(request: Request) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.verify(bearer_token(request))
    await request.app.state.users.ensure(principal)
    return principal


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.require_admin()
    return principal


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]

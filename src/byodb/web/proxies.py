"""Trusted reverse proxies: whose ``X-Forwarded-Proto`` / ``X-Forwarded-For`` are believed.

Behind a TLS-terminating proxy the app sees plain HTTP from the proxy's address. Only when
that address is in ``BYODB_TRUSTED_PROXIES`` does the request take the scheme and client
address the proxy forwarded; from anyone else those headers are ignored, because any client
can send them. The scheme decides the ``Secure`` cookie attribute and the same-site check's
own origin (``web/same_site.py``).

This runs inside the app, not in uvicorn, so every server and the in-process tests behave
the same; ``byodb serve`` keeps uvicorn's own proxy handling off (it would trust 127.0.0.1
and ``FORWARDED_ALLOW_IPS`` by default).
"""

from __future__ import annotations

from typing import Any, cast

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from byodb.settings import Settings


class TrustedProxiesMiddleware:
    """uvicorn's proxy-header handling (the right-most untrusted ``X-Forwarded-For`` hop is
    the client), fed with the validated networks of the settings — none by default."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        trusted = [str(network) for network in settings.trusted_proxy_networks]
        # uvicorn and Starlette spell the same ASGI callable with different type aliases.
        self._proxied: ASGIApp | None = (
            cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=trusted))
            if trusted else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._proxied is None:  # nothing trusted: the connection's own facts stand
            await self.app(scope, receive, send)
        else:
            await self._proxied(scope, receive, send)

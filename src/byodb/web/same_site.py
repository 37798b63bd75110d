"""The same-site check: a state-changing request that a browser could send on its own —
signed in by a cookie, or a sign-in form post — must come from this site's own pages.

A cookie goes along with every request the browser makes to us, also when a page on another
origin submits a form or a ``fetch`` (``SameSite=Lax`` stops that only across *sites*, not
from a sibling subdomain, and Clerk's ``__session`` cookie is not ours to configure). So the
request's own headers have to show where it started. The decision, for every method but
GET, HEAD and OPTIONS, in this order:

1. The credential is an ``Authorization: Bearer`` header → allowed. Another site cannot make
   a browser add that header (it would need a CORS preflight, which this app never answers),
   so scripts and API clients are unaffected.
2. An ``Origin`` header is present → allowed only if it is the request's own origin:
   scheme, host and port of the request as this app sees it — the ``Host`` header, and the
   scheme of the connection or, from an address in ``BYODB_TRUSTED_PROXIES`` only, of
   ``X-Forwarded-Proto``. ``Origin: null`` (sandboxed frames, privacy redirects) is refused.
3. Else a ``Sec-Fetch-Site`` header is present → allowed only for ``same-origin`` or
   ``none`` (the user typed or bookmarked it); ``same-site`` and ``cross-site`` are refused.
4. Else (no evidence either way: curl, very old browsers) → refused if the request carries
   a session cookie (``byodb_session`` or ``__session``), allowed without one: then no
   ambient credential is at stake, and every browser released since 2020 sends ``Origin``
   on a form post, so a sign-in post without it is a script, not a login-CSRF page.

A refusal is 403 ``cross_site_request``, answered before the body is read or any route
runs, so nothing has changed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from byodb.errors import Forbidden
from byodb.web.deps import request_credential
from byodb.web.errors import error_body

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PROXY_HINT = ("Behind a reverse proxy, pass the original Host header through and list the "
               "proxy in BYODB_TRUSTED_PROXIES so that X-Forwarded-Proto is believed.")


class CrossSiteRequest(Forbidden):
    code = "cross_site_request"


def _origin_key(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, default ports filled in; None when malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def own_origin(request: Request) -> str:
    """This request's own origin: its scheme (already corrected for a trusted proxy by the
    outer middleware) and its Host header."""
    return f"{request.url.scheme}://{request.url.netloc}"


def cross_site_refusal(request: Request) -> CrossSiteRequest | None:
    """Why an unsafe request must be refused as cross-site, or None (module docstring)."""
    credential = request_credential(request)
    if credential is not None and not credential.from_cookie:
        return None
    origin = request.headers.get("origin")
    if origin is not None:
        expected = _origin_key(own_origin(request))
        if expected is not None and _origin_key(origin) == expected:
            return None
        return CrossSiteRequest(
            "refused: this request was sent by a page of another origin; changes must come "
            "from this site's own pages (or carry an Authorization: Bearer header)",
            hint=_PROXY_HINT)
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site.strip().lower() in SAME_ORIGIN_FETCH_SITES:
            return None
        return CrossSiteRequest(
            "refused: the browser says this request came from another site "
            "(Sec-Fetch-Site); changes must come from this site's own pages")
    if credential is not None:
        return CrossSiteRequest(
            "refused: a request signed in by a cookie must show it came from this site "
            "(an Origin or Sec-Fetch-Site header); scripts should send an "
            "Authorization: Bearer header instead of a cookie")
    return None


class SameSiteMiddleware:
    """Applies :func:`cross_site_refusal` to every unsafe HTTP request, before the body."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        refusal = cross_site_refusal(Request(scope))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        # Answered here, outside the routes, so the exception handlers of web/errors.py never
        # see it; the body is built by the same function they use.
        response = JSONResponse(error_body(refusal.code, refusal.message, refusal.hint),
                                status_code=refusal.status)
        await response(scope, receive, send)

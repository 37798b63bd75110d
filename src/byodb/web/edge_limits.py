"""The HTTP edge: a request body is size-limited, and an unsafe API request authenticated,
before the app reads a byte of the body (DESIGN.md §6, "The HTTP edge").

Without this an unauthenticated ``POST /api/conversations`` with a 300 MB JSON body was read
and parsed in full (seconds of CPU, a gigabyte of memory) only to get its 401.

:class:`EdgeLimits` is a pure ASGI middleware (it never buffers a body). For each HTTP
request it decides, in this order:

1. The body limit of the route's kind (:meth:`BodyLimits.for_path`): uploads, JSON carrying
   inline base64 bytes, any other body.
2. A ``Content-Length`` above that limit → 413 at once, nothing read.
3. An unsafe method (anything but GET/HEAD/OPTIONS) on ``/api/…`` → the credentials are
   verified now, with the app's :class:`~byodb.web.auth.Authenticator` and the same
   ``bearer_token`` the route dependencies use; none or invalid → 401, nothing read. The
   route's ``get_principal`` still runs later (it also registers the user): this is an
   early refusal, not a second notion of who the request is.
4. Otherwise the request goes on, with a ``receive`` that counts body bytes as they arrive
   (chunked or lying about its length). Passing the limit ends the request with 413; the
   app gets no further byte of the body, only a disconnect.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from byodb.content.limits import MAX_INLINE_BYTES
from byodb.errors import ByodbError
from byodb.settings import Settings
from byodb.web.auth import Authenticator
from byodb.web.deps import bearer_token
from byodb.web.errors import error_body

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

UPLOAD_PREFIXES: tuple[str, ...] = ("/api/files",)
"""Multipart uploads: a whole file in the body."""

IMPORT_PREFIXES: tuple[str, ...] = ("/api/import",)
"""Imports: a whole export file (``BYODB_MAX_IMPORT_BYTES``)."""

INLINE_PATHS = re.compile(r"^/api/(messages/[^/]+/attachments|tts-cache)(/|$)")
"""JSON bodies that carry bytes as base64 (``MAX_INLINE_BYTES`` decoded): attachments and
TTS audio. A test checks that every route whose OpenAPI body has a base64 field matches."""

BASE64_INLINE_BYTES = 4 * math.ceil(MAX_INLINE_BYTES / 3)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class BodyLimits:
    """Largest request body per route kind, in bytes."""

    json: int
    inline: int
    upload: int
    imports: int = 0
    """0: the upload limit."""

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        # Inline routes: the base64 bytes plus everything else a JSON body may hold.
        return cls(json=settings.max_json_body_bytes,
                   inline=BASE64_INLINE_BYTES + settings.max_json_body_bytes,
                   upload=settings.max_upload_bytes, imports=settings.max_import_bytes)

    def for_path(self, path: str) -> tuple[str, int]:
        """(kind, limit) of a request to ``path``; anything not named is a small body."""
        if any(_under(path, prefix) for prefix in UPLOAD_PREFIXES):
            return "upload", self.upload
        if any(_under(path, prefix) for prefix in IMPORT_PREFIXES):
            return "upload", self.imports or self.upload
        if INLINE_PATHS.match(path):
            return "inline", self.inline
        return "json", self.json


def too_large_message(kind: str, limit: int) -> str:
    what = "an upload" if kind == "upload" else "this request body"
    return f"{what} may be at most {limit} bytes"


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            # A malformed length is the server's to refuse (uvicorn does); counting still
            # applies to whatever arrives.
            return int(text) if text.isascii() and text.isdigit() else None
    return None


def _error_response(status: int, code: str, message: str,
                    hint: str | None = None) -> JSONResponse:
    # The error shape of byodb.web.errors, sent before the app (and its handlers) run.
    # Connection: close — the unread body must not be taken for the next request.
    return JSONResponse(error_body(code, message, hint), status_code=status,
                        headers={"Connection": "close"})


class EdgeLimits:
    def __init__(self, app: ASGIApp, *, limits: BodyLimits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        kind, limit = self.limits.for_path(path)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _error_response(413, "payload_too_large",
                                  too_large_message(kind, limit))(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and _under(path, "/api"):
            authenticator: Authenticator = scope["app"].state.authenticator
            try:
                await authenticator.verify(bearer_token(Request(scope)))
            except ByodbError as exc:
                await _error_response(exc.status, exc.code, exc.message,
                                      exc.hint)(scope, receive, send)
                return
        await _CountedRequest(self.app, kind, limit)(scope, receive, send)


class _CountedRequest:
    """One request whose body is cut off at ``limit`` bytes (see the module's step 4)."""

    def __init__(self, app: ASGIApp, kind: str, limit: int):
        self.app = app
        self.kind = kind
        self.limit = limit
        self.received = 0
        self.refused = False
        self.answered = False  # our 413 went out (the app's own answer is then dropped)
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}  # the rest of the body is never read
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.refused = True
                    # An HTTPException, not a ByodbError: FastAPI turns any other error
                    # while it parses a body into 400; this one reaches the error mapping
                    # (413 → payload_too_large).
                    raise HTTPException(413, too_large_message(self.kind, self.limit))
            return message

        async def checked_send(message: Message) -> None:
            if self.refused:
                # Whatever the app answers once its body was cut off, the client learns
                # why: a 413 (the app's own 413 passes as it is).
                if message["type"] == "http.response.start" and message["status"] != 413 \
                        and not self.started:
                    await self._answer_413(scope, receive, send)
                if self.answered:
                    return
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, checked_send)
        except Exception:
            if not self.refused:
                raise
            # The app gave up on the cut-off body by raising: that is the expected end.
        if self.refused and not self.started and not self.answered:
            await self._answer_413(scope, receive, send)

    async def _answer_413(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.answered = True
        self.started = True
        await _error_response(413, "payload_too_large",
                              too_large_message(self.kind, self.limit))(scope, receive, send)

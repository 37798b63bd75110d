"""The one place that maps errors to the JSON error shape ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from byodb.errors import ByodbError

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_input", 429: "rate_limited"}


def error_body(code: str, message: str, hint: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if hint:
        error["hint"] = hint
    return {"error": error}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ByodbError)
    async def byodb_error(request: Request, exc: ByodbError) -> JSONResponse:
        if exc.status >= 500 and exc.code != "byod_unavailable":
            log.error("request failed: %s", exc.code)
        headers = {"Retry-After": "5"} if exc.status in (429, 503) else None
        return JSONResponse(error_body(exc.code, exc.message, exc.hint), status_code=exc.status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request"
        return JSONResponse(error_body("invalid_input", message), status_code=422)

    @app.exception_handler(DataError)
    async def rejected_value(request: Request, exc: DataError) -> JSONResponse:
        # PostgreSQL refused a value the validation let through (a NUL character in text,
        # a number out of range): bad input, said without echoing the value.
        sqlstate = getattr(exc.orig, "sqlstate", None)
        log.info("value rejected by the database: SQLSTATE %s", sqlstate)
        return JSONResponse(error_body(
            "invalid_input", "a value was rejected by the database (for example a NUL "
            "character in text, or a number out of range)"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    app.add_middleware(ContainUnexpectedErrors)


class ContainUnexpectedErrors:
    """The last line for errors nobody mapped: a generic 500 and one log line with the
    exception's type only.

    Starlette's own handler would re-raise after answering, and the server would then log
    the traceback — whose text may hold a URL or user content (a constraint violation prints
    the failing row). Here the exception stops.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            where = exc.__traceback__
            while where is not None and where.tb_next is not None:
                where = where.tb_next
            origin = (f"{where.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:"
                      f"{where.tb_lineno}") if where else "?"
            log.error("unexpected error: %s at %s", type(exc).__name__, origin)
            if not started:
                response = JSONResponse(
                    error_body("internal_error", "something went wrong on our side"),
                    status_code=500)
                await response(scope, receive, send)

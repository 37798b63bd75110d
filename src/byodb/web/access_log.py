"""Access log without query strings.

uvicorn's access log prints the full request line, and a query string can carry user
content (``/api/search?q=…``), which must never reach a log (DESIGN.md §1). This middleware
logs method, path (ids only), status and duration instead; ``byodb serve`` turns uvicorn's
own access log off.

The path is percent-decoded, so ``GET /x%0AERROR%20byodb…`` would write a second, forged
log line (and ``%00`` a NUL). Every value written here goes through :func:`escape_log_value`:
one request, one line.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("byodb.access")

# C0 controls, DEL, C1 controls, the Unicode line and paragraph separators (some log viewers
# break lines there), and the backslash itself, so an escape in the log is always ours.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")


def escape_log_value(value: str) -> str:
    """``value`` with every character that could break or forge a log line as ``\\xNN``
    (``\\uNNNN`` above U+00FF)."""
    return _UNSAFE.sub(lambda m: _escape(m.group()), value)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            log.info("%s %s %d %.1fms", escape_log_value(str(scope["method"])),
                     escape_log_value(str(scope["path"])), status,
                     (time.perf_counter() - started) * 1000)

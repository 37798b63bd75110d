"""Rendering server pages: one Jinja environment (autoescaped), security headers, static files.

Every page is HTML with no inline script or style, so the Content-Security-Policy can forbid
both: initial data travels in ``<script type="application/json">`` blocks that are parsed,
never executed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from byodb import __version__

WEB_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,  # every template escapes every value unless told otherwise
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def adds_to(title: str, message: str | None) -> bool:
    """Whether ``message`` says more than ``title``: an error names its problem once, not as
    a heading and again as the sentence under it."""
    def words(text: str | None) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", (text or "").lower()))

    heading, sentence = words(title), words(message)
    return bool(sentence) and heading not in sentence and sentence not in heading


_environment.globals["adds_to"] = adds_to
templates = Jinja2Templates(env=_environment)


def render(request: Request, template: str, context: dict[str, Any] | None = None, *,
           status_code: int = 200) -> Response:
    """A page response with the common context and the security headers."""
    values: dict[str, Any] = {
        "app_version": __version__,
        "is_production": request.app.state.runtime.settings.is_production,
        # Live updates between the user's tabs (BYOD_REALTIME; static/js/live.js).
        "realtime": request.app.state.runtime.settings.byod_realtime,
        "principal": None,
        "active": "",
        "blocked": False,
        "byod_state": None,
    }
    values.update(context or {})
    response = templates.TemplateResponse(request, template, values, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


class RevalidatedStaticFiles(StaticFiles):
    """Static files that browsers revalidate (ETag) on every use, so an upgrade is never
    mixed with cached scripts of the previous version (ES modules import each other by
    plain relative paths, which cannot carry a version stamp)."""

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def static_files() -> StaticFiles:
    return RevalidatedStaticFiles(directory=STATIC_DIR)

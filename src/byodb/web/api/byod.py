"""BYOD API: the user's state, connection test, save & deploy, retry, disconnect."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field
from starlette.responses import JSONResponse, Response

from byodb.content import latest_schema_version
from byodb.content.package import build_package
from byodb.errors import ByodbError
from byodb.instances.connection.tls import MAX_PEM_BYTES
from byodb.instances.fleet.runs import schema_update_under_way
from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.instances.lifecycle.disconnect import KEPT_PROGRESS, DisconnectMode
from byodb.instances.lifecycle.own_database import holds_own_database
from byodb.instances.lifecycle.states import ConnectionStatus, ContentAccess
from byodb.instances.lifecycle.switch import OldDatabase
from byodb.web.api.models import RequestModel
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/byod", tags=["byod"])


class UrlBody(RequestModel):
    url: str = Field(..., max_length=2048, description="postgresql:// connection URL")
    ca_certificate: str | None = Field(
        None, max_length=MAX_PEM_BYTES,
        description="Your provider's CA certificate(s), PEM text (one or a bundle such as "
        "the RDS global bundle), to verify the server with sslmode=verify-full. Stored "
        "encrypted with the URL.")


class SaveBody(UrlBody):
    old_database: Literal["keep", "delete"] = Field(
        "keep", description="When this is another database than the one holding your "
        "content: keep the old database's copy after the move, or delete it there.")


class DisconnectBody(RequestModel):
    mode: Literal["keep", "migrate", "delete"]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def new_connections(refusal: ByodbError | None) -> dict[str, Any]:
    """Whether the flags let this user connect a (new) database, and why not."""
    if refusal is None:
        return {"allowed": True, "code": None, "message": None, "hint": None}
    return {"allowed": False, "code": refusal.code, "message": refusal.message,
            "hint": refusal.hint}


def byod_state(config: DatabaseConfig | None) -> dict[str, Any]:
    """The user's BYOD state as the API shows it (never the URL's password)."""
    latest = latest_schema_version()
    if config is None:
        return {"connection_status": "none", "deployment_status": "not_started",
                "deployment_progress": None, "deployment_step": 0, "deployment_total_steps": 0,
                "schema_version": None, "latest_schema_version": latest,
                "update_available": False, "database": None, "switching": False,
                "blocked": False, "content_on_own_database": False,
                "kept_on_own_database": False,
                "connection_error": None,
                "connection_error_code": None, "last_connection_test": None,
                "last_schema_deploy": None, "updated_at": None}
    return {
        "connection_status": config.connection_status.value,
        "deployment_status": config.deployment_status.value,
        "deployment_progress": config.deployment_progress,
        "deployment_step": config.deployment_step,
        "deployment_total_steps": config.deployment_total_steps,
        "schema_version": config.schema_version,
        "latest_schema_version": latest,
        "update_available": config.schema_version is not None and config.schema_version < latest,
        "database": config.redacted_url,
        # True while the content moves from the previous database to this one.
        "switching": config.switching,
        # The app is paused for this user: their content is on a database in error.
        "blocked": config.access is ContentAccess.unavailable,
        # Where the content is: the pages say so (the empty chat, Settings).
        "content_on_own_database": holds_own_database(config),
        # Disconnected with "keep": earlier content is still on the database they left.
        "kept_on_own_database": config.connection_status is ConnectionStatus.disconnected
        and config.deployment_progress == KEPT_PROGRESS,
        "connection_error": config.connection_error,
        "connection_error_code": config.connection_error_code,
        "last_connection_test": _iso(config.last_connection_test),
        "last_schema_deploy": _iso(config.last_schema_deploy),
        "updated_at": _iso(config.updated_at),
    }


@router.get("/project.zip", response_class=Response,
            responses={200: {"content": {"application/zip": {}}}})
async def project_zip(rt: RuntimeDep, me: PrincipalDep) -> Response:
    """The manual-deployment package for the schema target (what automatic deploys create):
    schema SQL, version steps and instructions."""
    version = rt.migrator.target
    return Response(build_package(version), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="byodb-schema-v{version}.zip"'})


@router.get("")
async def get_byod(rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """The signed-in user's BYOD state, and whether the flags let them connect a new
    database (``new_connections``)."""
    config = await rt.lifecycle.state(me.user_id)
    return {**byod_state(config),
            # A schema migration of their database is queued or running (fleet runs).
            "schema_updating": await schema_update_under_way(rt.main, me.user_id),
            "new_connections": new_connections(rt.lifecycle.new_connection_refusal(
                premium=me.is_premium))}


@router.post("/test")
async def test_database(body: UrlBody, request: Request, rt: RuntimeDep,
                        me: PrincipalDep) -> dict[str, object]:
    """Test a database URL: ``{"ok", "code", "message", "hint"}``. Changes nothing.
    Refused by the flags: 403 ``byod_disabled``, 402 ``premium_required``."""
    request.app.state.test_limiter.hit(me.user_id)
    return (await rt.lifecycle.test_for(me.user_id, body.url,
                                        ca_certificate=body.ca_certificate,
                                        premium=me.is_premium)).as_json()


@router.put("", status_code=202)
async def save_database(body: SaveBody, request: Request, rt: RuntimeDep,
                        me: PrincipalDep) -> JSONResponse:
    """Test, then save the URL encrypted and start the deployment (202). A URL of another
    database than the one holding your content moves it there (``old_database``: keep a
    copy on the old one, the default, or delete it there after the move)."""
    request.app.state.test_limiter.hit(me.user_id)
    saved = await rt.lifecycle.save(me.user_id, body.url, OldDatabase(body.old_database),
                                    ca_certificate=body.ca_certificate,
                                    premium=me.is_premium)
    return JSONResponse(byod_state(saved), status_code=202)


@router.post("/retry")
async def retry(rt: RuntimeDep, me: PrincipalDep) -> JSONResponse:
    """Reconnect after an outage (200), or finish a deployment or move that did not (202).
    Refused by the flags (403 ``byod_disabled``, 402 ``premium_required``) unless it is about
    the database that holds your content."""
    config, queued = await rt.lifecycle.retry(me.user_id, premium=me.is_premium)
    return JSONResponse(byod_state(config), status_code=202 if queued else 200)


@router.post("/disconnect", status_code=202)
async def disconnect(body: DisconnectBody, rt: RuntimeDep, me: PrincipalDep) -> JSONResponse:
    """Leave BYOD: ``keep`` (immediate, 200), ``migrate`` back to main or ``delete`` (202;
    the state is ``moving`` until it ends ``disconnected``)."""
    config, queued = await rt.lifecycle.disconnect(me.user_id, DisconnectMode(body.mode))
    return JSONResponse(byod_state(config), status_code=202 if queued else 200)

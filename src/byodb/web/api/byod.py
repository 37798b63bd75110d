"""BYOD API: the user's state, connection test, save & deploy, retry, disconnect."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from byodb.content import latest_schema_version
from byodb.content.package import build_package
from byodb.errors import Conflict, NotFound
from byodb.instances import config_store
from byodb.instances.config_store import DatabaseConfig
from byodb.instances.disconnect import (
        DisconnectMode,
        check_can_disconnect,
        disconnect_keep,
        start_moving,
)
from byodb.instances.guard import ConnectionCheckError, parse_database_url
from byodb.instances.probe import ConnectionVerdict, run_connection_test
from byodb.instances.provisioning import retry_connection
from byodb.instances.states import ConnectionStatus, DeploymentStatus
from byodb.jobs.queue import enqueue_disconnect, enqueue_provisioning
from byodb.vault import Secret
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/byod", tags=["byod"])


class UrlBody(BaseModel):
    url: str = Field(..., max_length=2048, description="postgresql:// connection URL")


class DisconnectBody(BaseModel):
    mode: Literal["keep", "migrate", "delete"]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def byod_state(config: DatabaseConfig | None) -> dict[str, Any]:
    """The user's BYOD state as the API shows it (never the URL's password)."""
    latest = latest_schema_version()
    if config is None:
        return {"connection_status": "none", "deployment_status": "not_started",
                "deployment_progress": None, "deployment_step": 0, "deployment_total_steps": 0,
                "schema_version": None, "latest_schema_version": latest,
                "update_available": False, "database": None, "connection_error": None,
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
        "connection_error": config.connection_error,
        "connection_error_code": config.connection_error_code,
        "last_connection_test": _iso(config.last_connection_test),
        "last_schema_deploy": _iso(config.last_schema_deploy),
        "updated_at": _iso(config.updated_at),
    }


@router.get("/project.zip", response_class=Response,
            responses={200: {"content": {"application/zip": {}}}})
async def project_zip(me: PrincipalDep) -> Response:
    """The manual-deployment package: schema SQL, version steps and instructions."""
    version = latest_schema_version()
    return Response(build_package(), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="byodb-schema-v{version}.zip"'})


@router.get("")
async def get_byod(rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """The signed-in user's BYOD state."""
    return byod_state(await config_store.load_config(rt.main, me.user_id))


async def _run_test(rt: RuntimeDep, url: str) -> ConnectionVerdict:
    return await run_connection_test(
        url, allow_private=rt.settings.private_hosts_allowed,
        tls_required=rt.settings.tls_required, latest_version=latest_schema_version(),
        connect_timeout_s=rt.settings.connect_timeout_s,
        total_timeout_s=rt.settings.test_timeout_s, resolver=rt.resolver)


@router.post("/test")
async def test_database(body: UrlBody, request: Request, rt: RuntimeDep,
                        me: PrincipalDep) -> dict[str, object]:
    """Test a database URL: ``{"ok", "code", "message", "hint"}``. Changes nothing."""
    request.app.state.test_limiter.hit(me.user_id)
    verdict = await _run_test(rt, body.url)
    return verdict.as_json()


@router.put("", status_code=202)
async def save_database(body: UrlBody, request: Request, rt: RuntimeDep,
                        me: PrincipalDep) -> JSONResponse:
    """Test, then save the URL encrypted and start the deployment (202)."""
    request.app.state.test_limiter.hit(me.user_id)
    current = await config_store.load_config(rt.main, me.user_id)
    if current is not None and current.connection_status is ConnectionStatus.moving:
        raise Conflict("your data is being moved; wait until it finishes")
    if current is not None and current.deployment_status is DeploymentStatus.deploying:
        raise Conflict("a deployment is already running; wait until it finishes")
    verdict = await _run_test(rt, body.url)
    if not verdict.ok:
        raise ConnectionCheckError(verdict.message, hint=verdict.hint, code=verdict.code)
    parsed = parse_database_url(body.url)
    saved = await config_store.save_credentials(rt.main, rt.vault, me.user_id, parsed,
                                                Secret(body.url.strip()))
    rt.router.invalidate(me.user_id)
    await enqueue_provisioning(request.app.state.job_app, me.user_id, saved.credential_version)
    return JSONResponse(byod_state(saved), status_code=202)


@router.post("/retry")
async def retry(request: Request, rt: RuntimeDep, me: PrincipalDep) -> JSONResponse:
    """Reconnect after an outage, or re-run a deployment that failed (202)."""
    config = await config_store.load_config(rt.main, me.user_id)
    if config is None or config.encrypted_url is None or config.connection_status in (
            ConnectionStatus.none, ConnectionStatus.disconnected):
        raise NotFound("no database is saved for your account")
    if config.deployment_status is DeploymentStatus.deploying:
        return JSONResponse(byod_state(config), status_code=202)
    if (config.deployment_status is not DeploymentStatus.deployed
            or config.connection_status in (ConnectionStatus.moving, ConnectionStatus.pending)):
        await enqueue_provisioning(request.app.state.job_app, me.user_id,
                                   config.credential_version)
        queued = await config_store.load_config(rt.main, me.user_id)
        return JSONResponse(byod_state(queued), status_code=202)
    return JSONResponse(byod_state(await retry_connection(rt, me.user_id)))


@router.post("/disconnect", status_code=202)
async def disconnect(body: DisconnectBody, request: Request, rt: RuntimeDep,
                     me: PrincipalDep) -> JSONResponse:
    """Leave BYOD: ``keep`` (immediate, 200), ``migrate`` back to main or ``delete`` (202;
    the state is ``moving`` until it ends ``disconnected``)."""
    mode = DisconnectMode(body.mode)
    config = await config_store.load_config(rt.main, me.user_id)
    check_can_disconnect(config, mode)
    assert config is not None
    if mode is DisconnectMode.keep:
        return JSONResponse(byod_state(await disconnect_keep(rt, me.user_id)))
    moving = await start_moving(rt, me.user_id, mode)
    await enqueue_disconnect(request.app.state.job_app, me.user_id, config.credential_version,
                             mode.value)
    return JSONResponse(byod_state(moving), status_code=202)

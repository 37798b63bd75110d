"""Admin API for fleet schema runs: start one, list them, watch one, retry its failures.

Admin-only like the rest of ``/api/admin`` (``AdminDep``; a non-admin gets 403). Records
carry user ids, hosts, versions, steps and error codes and sentences that never hold a
secret or content (``byodb.instances.fleet.schema_migration``).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from byodb.content.version import supported_schema_versions
from byodb.instances.fleet import runs as fleet_runs
from byodb.instances.fleet.jobs import FleetScheduler
from byodb.instances.fleet.options import RunOptions
from byodb.web.api.models import RequestModel
from byodb.web.deps import AdminDep, RuntimeDep

router = APIRouter(prefix="/api/admin/byod/migrations", tags=["admin"])

DEFAULT_CANARY = 5
"""An operator's run starts with this many instances unless told otherwise."""


class StartRun(RequestModel):
    to_version: int | None = Field(None, description="default: the configured target")
    canary: int = Field(DEFAULT_CANARY, ge=0, le=100_000)
    dry_run: bool = False


def _scheduler(request: Request, rt: RuntimeDep) -> FleetScheduler:
    return FleetScheduler(request.app.state.job_app, rt.main)


@router.post("", status_code=202)
async def start_run(body: StartRun, request: Request, rt: RuntimeDep,
                    admin: AdminDep) -> JSONResponse:
    """Start a run (canary first); 202 with its id — watch it with ``GET …/{id}``."""
    options = RunOptions(
        to_version=body.to_version if body.to_version is not None
        else rt.migrator.target,
        canary=body.canary, dry_run=body.dry_run, started_by=f"admin:{admin.user_id}")
    options.check(supported_schema_versions())
    run_id = await _scheduler(request, rt).start(options)
    return JSONResponse({"id": str(run_id)}, status_code=202)


@router.get("")
async def list_runs(rt: RuntimeDep, _admin: AdminDep) -> dict[str, Any]:
    """The latest runs (newest first) with their counts, and records by state."""
    return {"target_version": rt.migrator.target,
            "runs": await fleet_runs.latest_runs(rt.main),
            "instances_by_state": await fleet_runs.instances_by_state(rt.main)}


@router.get("/{run_id}")
async def get_run(run_id: uuid.UUID, rt: RuntimeDep, _admin: AdminDep) -> dict[str, Any]:
    """One run: counts and each instance's record (failures first)."""
    return await fleet_runs.describe_run(rt.main, run_id, with_instances=True)


@router.post("/{run_id}/retry-failed", status_code=202)
async def retry_failed(run_id: uuid.UUID, request: Request, rt: RuntimeDep,
                       _admin: AdminDep) -> JSONResponse:
    """Failed instances of the run back to pending and the run resumed."""
    count = await _scheduler(request, rt).retry_failed(run_id)
    return JSONResponse({"id": str(run_id), "retried": count}, status_code=202)

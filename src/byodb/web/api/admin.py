"""Admin API for the BYOD dashboard: fleet totals, instances, one instance's migrations.

The admin role is checked on the server (``AdminDep``) for every route; a non-admin gets
403. Only the stored ``redacted_url`` and ``host`` are ever returned — never a password,
a ciphertext or a full URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from byodb.content import latest_schema_version
from byodb.errors import NotFound
from byodb.maindb.tables import byod_migrations, users
from byodb.maindb.tables import user_database_config as udc
from byodb.services.reembed import progress_summary
from byodb.services.rows import row_dict
from byodb.web.deps import AdminDep, RuntimeDep

router = APIRouter(prefix="/api/admin/byod", tags=["admin"])

STATUS_ORDER = ("connected", "pending", "moving", "error", "disconnected", "none")
_NOT_INSTANCES = ("none",)
_INACTIVE = ("none", "disconnected")

_INSTANCE_COLUMNS = (
    udc.c.user_id, udc.c.host, udc.c.redacted_url.label("database"),
    udc.c.connection_status, udc.c.deployment_status, udc.c.deployment_progress,
    udc.c.schema_version, udc.c.last_connection_test, udc.c.connection_error,
    udc.c.connection_error_code, udc.c.consecutive_failures, udc.c.last_schema_deploy,
    udc.c.instance_id, udc.c.created_at, udc.c.updated_at,
    # The health sweep's last check of the instance (issue 10).
    udc.c.last_health_check_at, udc.c.health_latency_ms, udc.c.health_error_code,
    udc.c.outage_reported_at,
)
_MIGRATION_COLUMNS = (
    byod_migrations.c.id, byod_migrations.c.migration_id, byod_migrations.c.from_version,
    byod_migrations.c.to_version, byod_migrations.c.status, byod_migrations.c.attempts,
    byod_migrations.c.error, byod_migrations.c.started_at, byod_migrations.c.completed_at,
    byod_migrations.c.duration_ms, byod_migrations.c.created_at, byod_migrations.c.updated_at,
)


@dataclass(frozen=True)
class FleetAction:
    """A fleet-wide operation the dashboard offers once its backend route exists."""

    id: str
    label: str
    description: str
    method: str
    path: str


FLEET_ACTIONS = (
    FleetAction("migrate_all", "Run schema migrations on all instances",
                "Bring every instance behind the latest schema version up to date.",
                "POST", "/api/admin/byod/migrations"),
    FleetAction("health_check", "Check all connections now",
                "Test every connected instance instead of waiting for the next sweep.",
                "POST", "/api/admin/byod/health-check"),
)


def fleet_actions(app: FastAPI) -> list[dict[str, Any]]:
    """Each fleet action with ``available``: whether its route is registered in this app."""
    # Included routers are nested in app.routes: walk their effective routes too.
    routes = {(context.path, method) for context in iter_route_contexts(app.routes)
              if isinstance(context.original_route, APIRoute)
              for method in (context.methods or ())}
    return [{"id": a.id, "label": a.label, "description": a.description, "method": a.method,
             "path": a.path, "available": (a.path, a.method) in routes,
             "reason": None if (a.path, a.method) in routes else "not available yet"}
            for a in FLEET_ACTIONS]


def _instance(row: Any, latest: int) -> dict[str, Any]:
    item = row_dict(row)
    version = item["schema_version"]
    item["behind_latest"] = (item["deployment_status"] == "deployed" and version is not None
                             and version < latest
                             and item["connection_status"] not in _INACTIVE)
    return item


async def _totals(conn: AsyncConnection) -> dict[str, int]:
    everyone = users.outerjoin(udc, udc.c.user_id == users.c.id, full=True)
    status = func.coalesce(udc.c.connection_status, "none")
    rows = (await conn.execute(
        select(status.label("status"), func.count().label("n"))
        .select_from(everyone).group_by(status))).all()
    totals = dict.fromkeys(STATUS_ORDER, 0)
    for name, count in rows:
        totals[name] = int(count)
    return totals


async def _versions(conn: AsyncConnection) -> list[dict[str, int]]:
    rows = (await conn.execute(
        select(udc.c.schema_version, func.count())
        .where(udc.c.deployment_status == "deployed", udc.c.schema_version.is_not(None),
               udc.c.connection_status.not_in(_INACTIVE))
        .group_by(udc.c.schema_version).order_by(udc.c.schema_version.desc()))).all()
    return [{"schema_version": int(v), "count": int(n)} for v, n in rows]


@router.get("")
async def overview(request: Request, rt: RuntimeDep, _admin: AdminDep,
                   status: str | None = Query(None, max_length=20,
                                              description="only instances in this status"),
                   limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
    """Totals by connection status, schema versions, instances behind the latest version,
    and the instances (errors first, then most recently updated)."""
    latest = latest_schema_version()
    query = select(*_INSTANCE_COLUMNS).where(udc.c.connection_status.not_in(_NOT_INSTANCES))
    if status:
        query = query.where(udc.c.connection_status == status)
    query = query.order_by(case((udc.c.connection_status == "error", 0), else_=1),
                           udc.c.updated_at.desc(), udc.c.user_id).limit(limit)
    async with rt.main.connect() as conn:
        totals = await _totals(conn)
        versions = await _versions(conn)
        rows = (await conn.execute(query)).all()
        instance_count = int((await conn.execute(
            select(func.count()).select_from(udc)
            .where(udc.c.connection_status.not_in(_NOT_INSTANCES)))).scalar_one())
    instances = [_instance(row, latest) for row in rows]
    embeddings = {"model": rt.embedder.name, **await progress_summary(rt.main)}
    behind = sum(item["count"] for item in versions if item["schema_version"] < latest)
    return {
        "generated_at": datetime.now(UTC).isoformat(),
        "latest_schema_version": latest,
        "users": sum(totals.values()),
        "totals": totals,
        "versions": versions,
        "behind_latest": behind,
        "instance_count": instance_count,
        "instances": instances,
        "fleet_actions": fleet_actions(request.app),
        "embeddings": embeddings,
    }


@router.get("/instances/{user_id}")
async def instance_detail(user_id: str, rt: RuntimeDep, _admin: AdminDep) -> dict[str, Any]:
    """One user's instance with its migration history (newest first)."""
    async with rt.main.connect() as conn:
        row = (await conn.execute(
            select(*_INSTANCE_COLUMNS).where(udc.c.user_id == user_id))).first()
        if row is None:
            raise NotFound("no database is configured for this user")
        history = (await conn.execute(
            select(*_MIGRATION_COLUMNS).where(byod_migrations.c.user_id == user_id)
            .order_by(byod_migrations.c.created_at.desc(), byod_migrations.c.to_version.desc())
            .limit(200))).all()
    return {"instance": _instance(row, latest_schema_version()),
            "migrations": [row_dict(r) for r in history]}

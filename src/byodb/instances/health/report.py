"""Read-only views of the fleet's health for operators (CLI, admin API): the last sweeps,
instances with their last check, counts by status and schema version. Only stored, redacted
facts are returned: the host and the redacted URL, never a password or a ciphertext."""

from __future__ import annotations

from typing import Any

from sqlalchemy import desc, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.maindb.tables import health_sweeps
from byodb.maindb.tables import user_database_config as udc

INSTANCE_COLUMNS = (
    udc.c.user_id, udc.c.host, udc.c.redacted_url.label("database"), udc.c.connection_status,
    udc.c.deployment_status, udc.c.schema_version, udc.c.connection_error,
    udc.c.connection_error_code, udc.c.consecutive_failures, udc.c.last_connection_test,
    udc.c.last_health_check_at, udc.c.health_latency_ms, udc.c.health_error_code,
    udc.c.outage_reported_at, udc.c.instance_id, udc.c.updated_at,
)
SWEEP_COLUMNS = (health_sweeps.c.id, health_sweeps.c.trigger, health_sweeps.c.started_at,
                 health_sweeps.c.finished_at, health_sweeps.c.checked, health_sweeps.c.healthy,
                 health_sweeps.c.failed, health_sweeps.c.recovered, health_sweeps.c.duration_ms)


def _jsonable(mapping: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dict(mapping).items():
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif value is not None and not isinstance(value, str | int | float | bool):
            value = str(value)
        out[key] = value
    return out


async def last_sweep(main: AsyncEngine, *, finished: bool = False) -> dict[str, Any] | None:
    """The latest sweep (the latest finished one with ``finished``), or None."""
    query = select(*SWEEP_COLUMNS).order_by(desc(health_sweeps.c.started_at)).limit(1)
    if finished:
        query = query.where(health_sweeps.c.finished_at.is_not(None))
    async with main.connect() as conn:
        row = (await conn.execute(query)).first()
    return _jsonable(row._mapping) if row is not None else None


async def list_instances(main: AsyncEngine, *, status: str | None = None,
                         limit: int = 10_000) -> list[dict[str, Any]]:
    """Instances (not the users who never configured one), errors first."""
    query = select(*INSTANCE_COLUMNS).where(udc.c.connection_status != "none")
    if status is not None:
        query = query.where(udc.c.connection_status == status)
    query = query.order_by((udc.c.connection_status != "error"), udc.c.user_id).limit(limit)
    async with main.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_jsonable(row._mapping) for row in rows]


async def get_instance(main: AsyncEngine, user_id: str) -> dict[str, Any] | None:
    async with main.connect() as conn:
        row = (await conn.execute(select(*INSTANCE_COLUMNS)
                                  .where(udc.c.user_id == user_id))).first()
    return _jsonable(row._mapping) if row is not None else None


async def counts(main: AsyncEngine) -> dict[str, dict[str, int]]:
    """Instances by connection status, and deployed ones by schema version."""
    async with main.connect() as conn:
        by_status = (await conn.execute(
            select(udc.c.connection_status, func.count())
            .where(udc.c.connection_status != "none")
            .group_by(udc.c.connection_status))).all()
        by_version = (await conn.execute(
            select(udc.c.schema_version, func.count())
            .where(udc.c.schema_version.is_not(None),
                   udc.c.connection_status.not_in(("none", "disconnected")))
            .group_by(udc.c.schema_version))).all()
    return {"by_status": {str(s): int(n) for s, n in by_status},
            "by_schema_version": {str(v): int(n) for v, n in by_version}}

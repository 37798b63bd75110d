"""Fleet-wide counts read from main for ``GET /metrics``: aggregates only, never a row.

Every query groups or picks one summary row; none selects a user id, a host or a URL, so
nothing per-user can reach a metric label by mistake. Labels that come from main columns
are kept only when they are values byodb itself writes (the check constraints' lists).

:func:`read_fleet_aggregates` fills a :class:`FleetAggregates` one group at a time, so a
caller that stops waiting (a slow main) still has every group read before that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.maindb.tables import (
    CONNECTION_STATUSES,
    MIGRATION_STATUSES,
    byod_migrations,
    health_sweeps,
    user_database_config,
)

# Instances whose database is in use (or should be): counted by schema version.
LIVE_STATUSES = ("connected", "error", "moving")
# procrastinate's statuses of work not done yet: waiting, and running now.
QUEUED_JOB_STATUSES = ("todo", "doing")


@dataclass(frozen=True)
class LastSweep:
    """The most recent health sweep that finished."""

    finished_at: datetime
    duration_s: float | None
    checked: int
    healthy: int
    failed: int
    recovered: int


@dataclass
class FleetAggregates:
    """What main said so far. A group left ``None`` (or ``sweeps_read`` false) was not read:
    main was too slow or failed before it."""

    instances_by_status: dict[str, int] | None = None
    # Schema version of live instances; None = not recorded (still deploying, say).
    instances_by_schema_version: dict[int | None, int] | None = None
    sweeps_read: bool = False
    last_sweep: LastSweep | None = None
    migrations_by_state: dict[str, int] | None = None
    # (queue name, "todo" | "doing") -> jobs.
    jobs_by_queue: dict[tuple[str, str], int] | None = None
    complete: bool = False


async def read_fleet_aggregates(main: AsyncEngine, into: FleetAggregates, *,
                                timeout_s: float) -> None:
    """Fill ``into`` from main, each statement limited by main to ``timeout_s`` too (the
    caller's own deadline stops waiting; this one stops the work on the server)."""
    async with main.connect() as conn, conn.begin():
        await conn.execute(text("select pg_catalog.set_config('statement_timeout', :ms, true)"),
                           {"ms": f"{max(1, int(timeout_s * 1000))}ms"})
        into.instances_by_status = await _instances_by_status(conn)
        into.instances_by_schema_version = await _instances_by_schema_version(conn)
        into.last_sweep = await _last_sweep(conn)
        into.sweeps_read = True
        into.migrations_by_state = await _migrations_by_state(conn)
        into.jobs_by_queue = await _jobs_by_queue(conn)
    into.complete = True


async def _instances_by_status(conn: AsyncConnection) -> dict[str, int]:
    status = user_database_config.c.connection_status
    rows = await conn.execute(select(status, func.count()).group_by(status))
    counts = dict.fromkeys(CONNECTION_STATUSES, 0)
    for name, count in rows:
        if name in counts:
            counts[name] = int(count)
    return counts


async def _instances_by_schema_version(conn: AsyncConnection) -> dict[int | None, int]:
    config = user_database_config.c
    rows = await conn.execute(
        select(config.schema_version, func.count())
        .where(config.connection_status.in_(LIVE_STATUSES))
        .group_by(config.schema_version))
    return {None if version is None else int(version): int(count) for version, count in rows}


async def _last_sweep(conn: AsyncConnection) -> LastSweep | None:
    sweep = health_sweeps.c
    # Newest start first walks the started_at index; the first finished one is the answer.
    row = (await conn.execute(
        select(sweep.finished_at, sweep.duration_ms, sweep.checked, sweep.healthy,
               sweep.failed, sweep.recovered)
        .where(sweep.finished_at.is_not(None))
        .order_by(sweep.started_at.desc()).limit(1))).first()
    if row is None:
        return None
    return LastSweep(finished_at=row.finished_at,
                     duration_s=None if row.duration_ms is None else row.duration_ms / 1000,
                     checked=int(row.checked), healthy=int(row.healthy),
                     failed=int(row.failed), recovered=int(row.recovered))


async def _migrations_by_state(conn: AsyncConnection) -> dict[str, int]:
    status = byod_migrations.c.status
    rows = await conn.execute(select(status, func.count()).group_by(status))
    counts = dict.fromkeys(MIGRATION_STATUSES, 0)
    for name, count in rows:
        if name in counts:
            counts[name] = int(count)
    return counts


async def _jobs_by_queue(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    # procrastinate's own table (public schema, created at start-up), not in tables.py.
    rows = await conn.execute(text(
        "select queue_name, status::text, count(*) from procrastinate_jobs "
        "where status in ('todo', 'doing') group by queue_name, status"))
    return {(str(queue), str(status)): int(count) for queue, status, count in rows}

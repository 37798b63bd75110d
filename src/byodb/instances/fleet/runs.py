"""Fleet schema runs on main: plan a run, decide its waves, halt it, retry its failures.

A run (``migrations`` row) brings every user database behind a target version there. Its
plan is made from main's records alone — an instance already at the target is counted as
``already_current`` without a connection — and written as one ``byod_migrations`` record
per instance behind. Waves: a canary of N instances first (wave 1), then the rest (wave 2).
A wave has *settled* when each of its instances completed, failed, or was tried and found
unreachable (it stays ``pending`` and is tried again later). When a wave's failures pass
``max_failure_ratio`` of what settled, the run halts itself (instances not started stay
``pending``); an operator fixes the cause and retries the failed ones, which resumes it.

Every decision is taken under the run row's lock, so any number of workers on any number
of machines share one run and agree on it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.errors import NotFound
from byodb.instances.fleet.options import RunOptions
from byodb.instances.fleet.slots import PlannedJob, assign_slots
from byodb.instances.fleet.states import (
    ACTIVE_RUNS,
    RecordStatus,
    RunStatus,
    as_stored,
    check_run_transition,
    rejoinable,
)
from byodb.instances.lifecycle.own_database import ON_OWN_DEPLOYED_DATABASE
from byodb.maindb.tables import byod_migrations as bm
from byodb.maindb.tables import migrations as runs
from byodb.maindb.tables import user_database_config as udc

AUTO = "auto"
# A wave is judged on its failure ratio only once this many of its instances settled (or
# the whole wave did): two failures out of the first two are not a trend.
MIN_SETTLED_TO_HALT = 10
# Codes of instances left pending because they could not be reached; a run whose only
# unfinished instances are these has brought every reachable instance to the target.
UNREACHABLE_CODES = frozenset({"unreachable", "timeout", "auth_failed", "tls_failed",
                               "database_missing", "too_many_connections"})
# Codes of instances that were reachable but busy (a table locked by the user, another
# migration or deploy): their next try comes in seconds, so a follower waits for it.
RETRYING_CODES = frozenset({"lock_timeout", "busy"})


@dataclass(frozen=True)
class RunCounts:
    total: int
    completed: int
    failed: int
    pending: int
    running: int
    already_current: int


def _eligible_behind(to_version: int) -> Any:
    return and_(ON_OWN_DEPLOYED_DATABASE, udc.c.schema_version < to_version)


async def count_behind(main: AsyncEngine, to_version: int) -> tuple[int, int]:
    """(instances behind ``to_version``, instances already at it or newer), from main's
    records only — the no-op check of a fleet that is current costs one query."""
    async with main.connect() as conn:
        row = (await conn.execute(select(
            func.count().filter(udc.c.schema_version < to_version),
            func.count().filter(udc.c.schema_version >= to_version))
            .where(ON_OWN_DEPLOYED_DATABASE))).one()
    return int(row[0]), int(row[1])


async def create_run(main: AsyncEngine, options: RunOptions) -> uuid.UUID | None:
    """Record a run and its instances; None when an automatic run for this target exists
    already (another replica started it). The caller then schedules :func:`wave_jobs`."""
    run_id = uuid.uuid4()
    async with main.begin() as conn:
        inserted = (await conn.execute(
            insert(runs).values(
                id=run_id, to_version=options.to_version, status=RunStatus.running.value,
                started_by=options.started_by, dry_run=options.dry_run,
                canary=options.canary, concurrency=options.concurrency,
                per_host=options.per_host, max_failure_ratio=options.max_failure_ratio)
            .on_conflict_do_nothing().returning(runs.c.id))).first()
        if inserted is None:
            return None
        behind = (await conn.execute(
            select(udc.c.user_id, udc.c.schema_version, udc.c.host)
            .where(_eligible_behind(options.to_version))
            # A stable shuffle: the canary is a spread of hosts and users, not the oldest.
            .order_by(func.md5(udc.c.user_id + str(run_id))))).all()
        current = await _count_current(conn, options.to_version)
        canary = options.canary if 0 < options.canary < len(behind) else 0
        rows = [{"id": uuid.uuid4(), "user_id": user_id, "from_version": version,
                 "to_version": options.to_version, "dry_run": options.dry_run,
                 "migration_id": run_id, "host": host, "status": RecordStatus.pending.value,
                 "wave": 1 if index < canary else 2}
                for index, (user_id, version, host) in enumerate(behind)]
        for start in range(0, len(rows), 1000):
            stmt = insert(bm).values(rows[start:start + 1000])
            # A new run tries again what an earlier one left failed (its cause may be fixed).
            again: dict[str, Any] = {"status": RecordStatus.pending.value, "error": None,
                                     "error_code": None,
                                     "step": None}
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[bm.c.user_id, bm.c.to_version, bm.c.dry_run],
                set_={"migration_id": run_id, "wave": stmt.excluded.wave,
                      "host": stmt.excluded.host, "from_version": stmt.excluded.from_version,
                      "updated_at": func.now(), **again},
                where=bm.c.status.in_(as_stored(rejoinable(dry_run=options.dry_run)))))
        await conn.execute(update(runs).where(runs.c.id == run_id).values(
            wave=1 if canary else 2, already_current=current))
        await _recount(conn, run_id)
    return run_id


async def _count_current(conn: AsyncConnection, to_version: int) -> int:
    """Instances already at ``to_version`` or newer (from main's records)."""
    row = (await conn.execute(select(func.count()).select_from(udc).where(
        ON_OWN_DEPLOYED_DATABASE, udc.c.schema_version >= to_version))).one()
    return int(row[0])


async def wave_jobs(main: AsyncEngine, run_id: uuid.UUID) -> tuple[dict[str, Any],
                                                                   list[PlannedJob]]:
    """The run and the jobs of its current wave's pending instances."""
    async with main.connect() as conn:
        run = await _run_row(conn, run_id)
        rows = (await conn.execute(
            select(bm.c.id, bm.c.host).where(bm.c.migration_id == run_id,
                                             bm.c.wave == run["wave"],
                                             bm.c.status == RecordStatus.pending.value)
            .order_by(bm.c.created_at, bm.c.id))).all()
    if run["status"] != RunStatus.running:
        return run, []
    return run, assign_slots([(r[0], r[1]) for r in rows], run["concurrency"], run["per_host"])


async def _run_row(conn: AsyncConnection, run_id: uuid.UUID, *,
                   for_update: bool = False) -> dict[str, Any]:
    query = select(runs).where(runs.c.id == run_id)
    row = (await conn.execute(query.with_for_update() if for_update else query)).first()
    if row is None:
        raise NotFound("no such migration run")
    return dict(row._mapping)


async def _recount(conn: AsyncConnection, run_id: uuid.UUID) -> RunCounts:
    rows = (await conn.execute(select(bm.c.status, func.count())
                               .where(bm.c.migration_id == run_id)
                               .group_by(bm.c.status))).all()
    by = {status: int(n) for status, n in rows}
    run = await _run_row(conn, run_id)
    counts = _counts(by, run)
    await conn.execute(update(runs).where(runs.c.id == run_id).values(
        total=counts.total, completed=counts.completed, failed=counts.failed,
        updated_at=func.now()))
    return counts


def _counts(by: dict[str, int], run: dict[str, Any]) -> RunCounts:
    """The run's counts from its records' statuses (``by``: status → records)."""
    return RunCounts(total=sum(by.values()), completed=by.get(RecordStatus.completed, 0),
                     failed=by.get(RecordStatus.failed, 0),
                     pending=by.get(RecordStatus.pending, 0),
                     running=by.get(RecordStatus.running, 0),
                     already_current=run["already_current"])


@dataclass(frozen=True)
class Decision:
    status: RunStatus
    next_wave: bool = False


async def advance(main: AsyncEngine, run_id: uuid.UUID) -> Decision:
    """Recount the run and take the next decision: halt it, open the next wave, or settle
    it (``completed``, or ``incomplete`` while instances failed or wait to be reachable)."""
    if await _nothing_to_decide(main, run_id):
        return Decision(RunStatus.running)
    async with main.begin() as conn:
        run = await _run_row(conn, run_id, for_update=True)
        current = RunStatus(run["status"])
        if current not in ACTIVE_RUNS or await _superseded(conn, run):
            return Decision(current)  # its counts stay as they were when it ended
        counts = await _recount(conn, run_id)
        if current is RunStatus.incomplete and counts.completed == counts.total:
            await _finish(conn, run_id, current, RunStatus.completed)
            return Decision(RunStatus.completed)
        if current is not RunStatus.running:
            return Decision(current)
        wave = run["wave"]
        # Tried and left pending (unreachable, busy) records why; a record (re)joining
        # the run has no error yet.
        tried = (bm.c.status.in_(as_stored({RecordStatus.completed, RecordStatus.failed}))
                 | ((bm.c.status == RecordStatus.pending.value) & bm.c.error_code.is_not(None)))
        row = (await conn.execute(select(
            func.count().filter(tried),
            func.count().filter(bm.c.status == RecordStatus.failed.value),
            func.count().filter(~tried))
            .where(bm.c.migration_id == run_id, bm.c.wave == wave))).one()
        settled, failed, unsettled = int(row[0]), int(row[1]), int(row[2])
        judged = unsettled == 0 or settled >= MIN_SETTLED_TO_HALT
        if settled and judged and failed / settled > run["max_failure_ratio"]:
            reason = (f"{'the canary' if wave == 1 else 'wave 2'}: {failed} of {settled} "
                      f"instances failed, more than {run['max_failure_ratio']:.0%}")
            await _finish(conn, run_id, current, RunStatus.halted, halted_reason=reason)
            return Decision(RunStatus.halted)
        if unsettled:
            return Decision(RunStatus.running)
        if wave == 1:
            await conn.execute(update(runs).where(runs.c.id == run_id).values(wave=2))
            return Decision(RunStatus.running, next_wave=True)
        status = RunStatus.completed if counts.completed == counts.total \
            else RunStatus.incomplete
        await _finish(conn, run_id, current, status)
        return Decision(status)


async def _nothing_to_decide(main: AsyncEngine, run_id: uuid.UUID) -> bool:
    """A cheap look without the run's lock: a running run whose current wave has no
    failure and still has instances to go has no decision to take (the common case while
    a wave runs, so jobs finishing at once do not queue on the run row)."""
    async with main.connect() as conn:
        run = await _run_row(conn, run_id)
        if run["status"] != RunStatus.running:
            return False
        row = (await conn.execute(select(
            func.count().filter(bm.c.status == RecordStatus.failed.value),
            func.count().filter(bm.c.status.in_(as_stored({RecordStatus.pending,
                                                           RecordStatus.running}))
                                & bm.c.error_code.is_(None)))
            .where(bm.c.migration_id == run_id, bm.c.wave == run["wave"]))).one()
    return int(row[0]) == 0 and int(row[1]) > 0


async def _superseded(conn: AsyncConnection, run: dict[str, Any]) -> bool:
    """Whether a newer run of the same target took over this run's unfinished instances
    (then this one's record of what it did is final)."""
    newer = (await conn.execute(select(func.count()).select_from(runs).where(
        runs.c.to_version == run["to_version"], runs.c.dry_run == run["dry_run"],
        runs.c.created_at > run["created_at"]))).scalar_one()
    return bool(newer)


async def _finish(conn: AsyncConnection, run_id: uuid.UUID, current: RunStatus,
                  status: RunStatus, *, halted_reason: str | None = None) -> None:
    check_run_transition(current, status)
    await conn.execute(update(runs).where(runs.c.id == run_id).values(
        status=status.value, halted_reason=halted_reason, finished_at=func.now(),
        updated_at=func.now()))


async def retry_failed(main: AsyncEngine, run_id: uuid.UUID) -> int:
    """Put the run's failed instances back to ``pending`` and resume the run (a halted run
    continues with its current wave). Returns how many instances will be tried again."""
    async with main.begin() as conn:
        run = await _run_row(conn, run_id, for_update=True)
        check_run_transition(RunStatus(run["status"]), RunStatus.running)
        result = await conn.execute(
            update(bm).where(bm.c.migration_id == run_id,
                             bm.c.status == RecordStatus.failed.value)
            .values(status=RecordStatus.pending.value, error=None, error_code=None,
                    updated_at=func.now()))
        await conn.execute(update(runs).where(runs.c.id == run_id).values(
            status=RunStatus.running.value, halted_reason=None, finished_at=None,
            updated_at=func.now()))
        await _recount(conn, run_id)
    return int(result.rowcount)


async def stale_records(main: AsyncEngine, run_id: uuid.UUID, older_than_s: float
                        ) -> list[uuid.UUID]:
    """Records of the run's current wave nobody is working on: pending and untouched for a
    while, or running under a lease that ran out (their job died with its worker)."""
    async with main.connect() as conn:
        run = await _run_row(conn, run_id)
        quiet = bm.c.updated_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0,
                                                                  older_than_s)
        rows = (await conn.execute(select(bm.c.id).where(
            bm.c.migration_id == run_id, bm.c.wave <= run["wave"],
            ((bm.c.status == RecordStatus.pending.value) & quiet)
            | ((bm.c.status == RecordStatus.running.value)
               & (bm.c.lease_expires_at < func.now())))))
        return [r[0] for r in rows.all()]


async def active_runs(main: AsyncEngine) -> list[uuid.UUID]:
    async with main.connect() as conn:
        rows = (await conn.execute(select(runs.c.id).where(
            runs.c.status.in_(as_stored(ACTIVE_RUNS))))).all()
    return [r[0] for r in rows]


def run_summary(run: dict[str, Any], counts: RunCounts) -> dict[str, Any]:
    return {"id": str(run["id"]), "to_version": run["to_version"], "status": run["status"],
            "started_by": run["started_by"], "dry_run": run["dry_run"],
            "canary": run["canary"], "wave": run["wave"],
            "concurrency": run["concurrency"], "per_host": run["per_host"],
            "max_failure_ratio": run["max_failure_ratio"],
            "halted_reason": run["halted_reason"],
            "created_at": run["created_at"].isoformat(),
            "finished_at": run["finished_at"].isoformat() if run["finished_at"] else None,
            "total": counts.total, "completed": counts.completed, "failed": counts.failed,
            "pending": counts.pending, "running": counts.running,
            "already_current": counts.already_current}


async def describe_run(main: AsyncEngine, run_id: uuid.UUID, *,
                       with_instances: bool = False, limit: int = 1000) -> dict[str, Any]:
    """A run with its counts (and its instances' records, failures first)."""
    async with main.connect() as conn:
        run = await _run_row(conn, run_id)
        if run["status"] == RunStatus.running:  # live counts; an ended run keeps its own
            rows = (await conn.execute(select(bm.c.status, func.count())
                                       .where(bm.c.migration_id == run_id)
                                       .group_by(bm.c.status))).all()
            by = {status: int(n) for status, n in rows}
            counts = _counts(by, run)
        else:
            counts = RunCounts(total=run["total"], completed=run["completed"],
                               failed=run["failed"],
                               pending=run["total"] - run["completed"] - run["failed"],
                               running=0, already_current=run["already_current"])
        summary = run_summary(run, counts)
        if with_instances:
            order = case((bm.c.status == RecordStatus.failed.value, 0),
                         (bm.c.status == RecordStatus.running.value, 1),
                         (bm.c.status == RecordStatus.pending.value, 2), else_=3)
            records = (await conn.execute(
                select(bm.c.user_id, bm.c.host, bm.c.status, bm.c.from_version,
                       bm.c.to_version, bm.c.step, bm.c.attempts, bm.c.error,
                       bm.c.error_code, bm.c.wave, bm.c.started_at, bm.c.completed_at,
                       bm.c.duration_ms)
                .where(bm.c.migration_id == run_id)
                .order_by(order, bm.c.user_id).limit(limit))).all()
            summary["instances"] = [_record_json(r) for r in records]
    return summary


def _record_json(row: Any) -> dict[str, Any]:
    item = dict(row._mapping)
    for key in ("started_at", "completed_at"):
        if item[key] is not None:
            item[key] = item[key].isoformat()
    return item


async def latest_runs(main: AsyncEngine, limit: int = 20) -> list[dict[str, Any]]:
    async with main.connect() as conn:
        ids = [r[0] for r in (await conn.execute(
            select(runs.c.id).order_by(runs.c.created_at.desc()).limit(limit))).all()]
    return [await describe_run(main, run_id) for run_id in ids]


async def instances_by_state(main: AsyncEngine) -> dict[str, int]:
    """Real (not dry-run) per-instance records by state, across every target."""
    async with main.connect() as conn:
        rows = (await conn.execute(select(bm.c.status, func.count())
                                   .where(bm.c.dry_run.is_(False))
                                   .group_by(bm.c.status))).all()
    return {str(status): int(n) for status, n in rows}


async def schema_update_under_way(main: AsyncEngine, user_id: str) -> bool:
    """Whether a migration of the user's database is queued or running (Settings shows
    "updating" meanwhile)."""
    async with main.connect() as conn:
        found = (await conn.execute(select(func.count()).select_from(bm).where(
            bm.c.user_id == user_id, bm.c.dry_run.is_(False),
            bm.c.status.in_(as_stored({RecordStatus.pending, RecordStatus.running}))))
            ).scalar_one()
    return bool(found)

"""The per-user records of schema migrations on main (``byod_migrations``) and their lease.

A record is ``pending → running → completed | failed`` (``failed → pending`` again when an
operator retries; an unreachable instance goes back to ``pending`` with its error noted).
A worker may run an instance only while it holds the record's lease: ``running`` with its
name in ``lease_owner`` and ``lease_expires_at`` in the future (renewed while it works).
The lease is taken over when it ran out, or by the same durable job retried after its
worker died (the owner is the job, so a retried job needs no wait). The advisory lock in
the user's database is the second guard (two mains, or a lease lost while a step runs).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.instances.fleet.states import (
    RecordStatus,
    RunStatus,
    as_stored,
    check_record_transition,
    rejoinable,
)
from byodb.maindb.tables import byod_migrations as bm
from byodb.maindb.tables import migrations as runs


@dataclass(frozen=True)
class MigrationRecord:
    id: uuid.UUID
    user_id: str
    migration_id: uuid.UUID | None
    from_version: int
    to_version: int
    status: RecordStatus
    attempts: int
    dry_run: bool
    step: int | None
    error: str | None
    error_code: str | None
    started_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> MigrationRecord:
        m = row._mapping
        return cls(id=m["id"], user_id=m["user_id"], migration_id=m["migration_id"],
                   from_version=m["from_version"], to_version=m["to_version"],
                   status=RecordStatus(m["status"]), attempts=m["attempts"],
                   dry_run=m["dry_run"],
                   step=m["step"], error=m["error"], error_code=m["error_code"],
                   started_at=m["started_at"])


async def upsert_record(conn: AsyncConnection, *, user_id: str, from_version: int,
                        to_version: int, dry_run: bool, migration_id: uuid.UUID | None,
                        host: str | None, wave: int = 2) -> MigrationRecord:
    """The user's record for ``to_version``, created ``pending`` if missing. An existing
    record joins the run (``migration_id``) unless it is running or completed; a failed
    one stays failed (retrying it is an operator's decision)."""
    values = {"id": uuid.uuid4(), "user_id": user_id, "from_version": from_version,
              "to_version": to_version, "dry_run": dry_run, "migration_id": migration_id,
              "host": host, "wave": wave, "status": RecordStatus.pending.value}
    stmt = insert(bm).values(**values)
    if migration_id is None:  # outside a run (a request's version gate): keep what is there
        stmt = stmt.on_conflict_do_nothing(
            index_elements=[bm.c.user_id, bm.c.to_version, bm.c.dry_run])
    else:
        # A dry run answers again each time; a real record once completed stays so.
        again: dict[str, Any] = ({"status": RecordStatus.pending.value, "error": None,
                                  "error_code": None, "step": None} if dry_run else {})
        stmt = stmt.on_conflict_do_update(
            index_elements=[bm.c.user_id, bm.c.to_version, bm.c.dry_run],
            set_={"migration_id": migration_id, "wave": wave, "host": host,
                  "updated_at": func.now(), **again},
            where=bm.c.status.in_(as_stored(rejoinable(dry_run=dry_run))))
    await conn.execute(stmt)
    row = (await conn.execute(select(bm).where(
        bm.c.user_id == user_id, bm.c.to_version == to_version,
        bm.c.dry_run == dry_run))).one()
    return MigrationRecord.from_row(row)


async def claim(engine: AsyncEngine, record_id: uuid.UUID, owner: str,
                lease_s: float) -> MigrationRecord | None:
    """Take the record's lease (``running``, one more attempt); None when another live
    worker holds it or it is not ``pending`` any more."""
    lease = func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s)
    takeover = (bm.c.status == RecordStatus.running.value) & (
        (bm.c.lease_owner == owner) | bm.c.lease_expires_at.is_(None)
        | (bm.c.lease_expires_at < func.now()))
    # A halted run's instances are left as they are until an operator resumes it.
    halted = select(runs.c.id).where(runs.c.id == bm.c.migration_id,
                                     runs.c.status == RunStatus.halted.value).exists()
    async with engine.begin() as conn:
        row = (await conn.execute(
            update(bm).where(bm.c.id == record_id,
                             (bm.c.status == RecordStatus.pending.value) | takeover, ~halted)
            .values(status=RecordStatus.running.value, lease_owner=owner,
                    lease_expires_at=lease,
                    attempts=bm.c.attempts + 1,
                    started_at=func.coalesce(bm.c.started_at, func.now()),
                    updated_at=func.now())
            .returning(*bm.c))).first()
    return MigrationRecord.from_row(row) if row is not None else None


async def renew(engine: AsyncEngine, record_id: uuid.UUID, owner: str,
                lease_s: float) -> bool:
    """Push the lease further; False when it is no longer ours."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(bm).where(bm.c.id == record_id, bm.c.lease_owner == owner,
                             bm.c.status == RecordStatus.running.value)
            .values(lease_expires_at=func.now()
                    + func.make_interval(0, 0, 0, 0, 0, 0, lease_s)))
    return bool(result.rowcount)


async def note_step(engine: AsyncEngine, record_id: uuid.UUID, owner: str,
                    step: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(bm).where(bm.c.id == record_id, bm.c.lease_owner == owner)
                           .values(step=step, updated_at=func.now()))


async def release(engine: AsyncEngine, record_id: uuid.UUID, owner: str, *,
                  status: RecordStatus,
                  error: str | None = None, error_code: str | None = None,
                  step: int | None = None) -> bool:
    """End our lease with ``status`` (``completed``, ``failed`` or back to ``pending``).
    Timings are recorded on completion; False when the lease was not ours any more."""
    check_record_transition(RecordStatus.running, status)
    changes: dict[str, Any] = {"status": status.value, "error": error,
                               "error_code": error_code, "lease_owner": None,
                               "lease_expires_at": None, "updated_at": func.now()}
    if step is not None:
        changes["step"] = step
    if status is RecordStatus.completed:
        changes["completed_at"] = func.now()
        changes["duration_ms"] = (func.extract("epoch", func.now() - bm.c.started_at)
                                 * 1000).cast(bm.c.duration_ms.type)
    async with engine.begin() as conn:
        result = await conn.execute(
            update(bm).where(bm.c.id == record_id, bm.c.lease_owner == owner,
                             bm.c.status == RecordStatus.running.value).values(**changes))
    return bool(result.rowcount)

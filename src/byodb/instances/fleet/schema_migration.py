"""Bringing one user's database to a target schema version: :class:`SchemaMigrator`.

What it promises (docs/operations.md, "Schema rollouts"):

- **Never two runs on one database**: the record's lease on main, and
  ``pg_try_advisory_xact_lock`` in each step's transaction in the user's database, on the
  key deploys use, so a fleet run, a request's version gate, a deploy and another machine's
  worker exclude each other. A transaction-level lock, because a transaction pooler in
  front of the database gives each transaction its own server session.
- **No user waits behind a migration**: each version step runs in its own transaction with
  ``SET LOCAL lock_timeout`` short; a step that cannot get its lock gives up at once and is
  retried on a ladder with jitter, so the user's own queries never queue for long behind a
  waiting ``ALTER``. ``statement_timeout`` bounds each step, a deadline the whole instance.
- **Nothing half done**: the step and the version in ``byodb.byodb_meta`` commit together;
  the version is read again under the row's lock inside the transaction, so a step is
  applied once however many times the job runs. A killed worker's transaction rolls back.
- **Errors classified**: transient ones (lock timeout, deadlock, too many connections, a
  lost connection) are retried; an unreachable instance stays ``pending`` and is tried
  again later; anything else is ``failed`` with the failing step and a message that holds
  no secret and no content, left for an operator.
- **Dry run**: every step applied in one transaction that is always rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import psycopg
import psycopg.sql
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.content.deploy import DEPLOY_LOCK_KEY, SchemaConflict, deployed_schema
from byodb.content.steps import steps_between
from byodb.errors import ByodbError
from byodb.instances.connection.deadlines import Deadline
from byodb.instances.connection.guard import ConnectionCheckError
from byodb.instances.fleet import records
from byodb.instances.fleet.states import RecordStatus
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.config_store import DatabaseConfig, load_config
from byodb.instances.lifecycle.databases import UserDatabases
from byodb.instances.lifecycle.own_database import on_own_deployed_database
from byodb.instances.lifecycle.states import ConnectionStatus
from byodb.instances.lifecycle.step_failures import public_error

log = logging.getLogger(__name__)

# SQLSTATEs worth another try: lock_not_available, deadlock_detected, too_many_connections,
# and the server going away under us (admin_shutdown, crash_shutdown, cannot_connect_now).
TRANSIENT_SQLSTATES = frozenset({"55P03", "40P01", "53300", "57P01", "57P02", "57P03"})
_LOCK_SQLSTATES = frozenset({"55P03", "40P01"})


@dataclass(frozen=True)
class MigrationLimits:
    """Time limits of one instance's migration, in seconds."""

    lock_timeout_s: float = 1.5
    step_timeout_s: float = 120.0
    instance_deadline_s: float = 600.0
    # Waits between tries of a step that could not get its lock (jitter: x0.5 .. x1.5).
    lock_ladder_s: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    lease_s: float = 60.0
    # When an instance could not be reached (or was busy), the next try is this far away,
    # growing with each attempt (the last value repeats).
    retry_later_s: tuple[float, ...] = (10.0, 30.0, 60.0, 300.0)

    def retry_delay_s(self, attempts: int) -> float:
        ladder = self.retry_later_s
        return ladder[min(max(attempts - 1, 0), len(ladder) - 1)]


class Outcome(StrEnum):
    completed = "completed"  # the database is at the target (dry run: would get there)
    already_current = "already_current"  # nothing to do (decided from main alone)
    pending = "pending"  # not now (unreachable, busy, locks held): try again later
    failed = "failed"  # a permanent error, recorded for an operator
    skipped = "skipped"  # the record is someone else's now, or settled


@dataclass(frozen=True)
class InstanceResult:
    outcome: Outcome
    code: str | None = None
    message: str | None = None
    step: int | None = None
    attempts: int = 0


class _Transient(Exception):
    """Try again later (the code says why)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class _Permanent(ByodbError):
    code = "step_failed"
    status = 500


class MigrationJobs(Protocol):
    """The durable job queue, as the version gate needs it (``fleet.jobs`` runs the job)."""

    async def migrate(self, record_id: uuid.UUID) -> None: ...


def is_transient(exc: BaseException) -> bool:
    """Whether another try later may succeed without anyone changing anything."""
    if isinstance(exc, ConnectionCheckError):
        return True  # unreachable, refused, credentials revoked: a later try may work
    if isinstance(exc, TimeoutError | OSError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in TRANSIENT_SQLSTATES:
        return True
    return isinstance(exc, psycopg.OperationalError) and sqlstate is None


class SchemaMigrator:
    """Runs version steps on users' databases, bringing them to ``target`` (the version
    ``BYODB_SCHEMA_TARGET`` names); one per process. ``limits``, ``steps`` and ``target``
    are attributes so an operator tool or a test can set them."""

    def __init__(self, *, main: AsyncEngine, databases: UserDatabases, changes: StateChanges,
                 target: int, limits: MigrationLimits = MigrationLimits(),
                 jobs: MigrationJobs | None = None,
                 steps: Mapping[int, tuple[str, ...]] | None = None):
        self.main = main
        self._databases = databases
        self._changes = changes
        self._jobs = jobs
        self.target = target
        self.limits = limits
        self.steps = steps

    def retry_delay_s(self, attempts: int) -> float:
        """How long an instance left pending waits before its next try."""
        return self.limits.retry_delay_s(attempts)

    async def request(self, config: DatabaseConfig) -> None:
        """Queue the user's migration to :attr:`target` now (the version gate of their
        requests): their record (created if missing) and a job for it, once."""
        if self._jobs is None:
            raise RuntimeError("this process has no job queue (read-only process)")
        assert config.schema_version is not None
        async with self.main.begin() as conn:
            record = await records.upsert_record(conn, user_id=config.user_id,
                                                 from_version=config.schema_version,
                                                 to_version=self.target, dry_run=False,
                                                 migration_id=None, host=config.host)
        if record.status is RecordStatus.pending:
            await self._jobs.migrate(record.id)

    async def run(self, record_id: uuid.UUID, owner: str) -> InstanceResult:
        """Run the record's migration if it is ours to run; see the module docstring."""
        record = await records.claim(self.main, record_id, owner, self.limits.lease_s)
        if record is None:  # another worker holds it, it ended, or its run halted
            return InstanceResult(Outcome.pending, "leased", "Not ours to run now.")
        config = await load_config(self.main, record.user_id)
        if not on_own_deployed_database(config):
            await records.release(self.main, record_id, owner, status=RecordStatus.failed,
                                  error_code="not_connected",
                                  error="The user no longer has a database of their own "
                                        "deployed.")
            return InstanceResult(Outcome.failed, "not_connected")
        assert config is not None and config.schema_version is not None
        if config.schema_version >= record.to_version and not record.dry_run:
            # Decided from main's record alone: no connection.
            await records.release(self.main, record_id, owner, status=RecordStatus.completed)
            return InstanceResult(Outcome.already_current)
        if config.connection_status is ConnectionStatus.moving:
            await records.release(self.main, record_id, owner, status=RecordStatus.pending,
                                  error_code="busy", error="The user's data is being moved.")
            return InstanceResult(Outcome.pending, "busy", "The user's data is being moved.",
                                  attempts=record.attempts)
        async with self._renewing(record_id, owner):
            return await self._run_claimed(record, config, owner)

    @contextlib.asynccontextmanager
    async def _renewing(self, record_id: uuid.UUID, owner: str) -> AsyncIterator[None]:
        async def renew() -> None:
            while True:
                await asyncio.sleep(self.limits.lease_s / 3)
                with contextlib.suppress(Exception):  # a missed renewal only shortens it
                    await records.renew(self.main, record_id, owner, self.limits.lease_s)

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run_claimed(self, record: records.MigrationRecord, config: DatabaseConfig,
                           owner: str) -> InstanceResult:
        step: int | None = None

        async def on_step(version: int) -> None:
            nonlocal step
            if step is not None:  # the first step is recorded with the outcome
                await records.note_step(self.main, record.id, owner, version)
            step = version

        try:
            async with asyncio.timeout(self.limits.instance_deadline_s):
                reached = await self._migrate_database(config, record, on_step)
        except _Transient as exc:
            await records.release(self.main, record.id, owner, status=RecordStatus.pending,
                                  error=exc.message, error_code=exc.code, step=step)
            return InstanceResult(Outcome.pending, exc.code, exc.message, step,
                                  record.attempts)
        except Exception as exc:
            if is_transient(exc):
                message, code = public_error(exc, stage="The migration")
                await records.release(self.main, record.id, owner, status=RecordStatus.pending,
                                      error=message, error_code=code)
                return InstanceResult(Outcome.pending, code, message, step, record.attempts)
            stage = f"Version step {step}" if step is not None else "The migration"
            message, code = public_error(exc, stage=stage)
            log.warning("schema migration failed for a user at step %s: %s", step, code)
            await records.release(self.main, record.id, owner, status=RecordStatus.failed,
                                  error=message, error_code=code, step=step)
            return InstanceResult(Outcome.failed, code, message, step, record.attempts)
        if not record.dry_run:
            await self._changes.update(
                config.user_id, expect_credential_version=config.credential_version,
                schema_version=reached, last_schema_deploy=self._changes.now())
        await records.release(self.main, record.id, owner, status=RecordStatus.completed, step=step)
        return InstanceResult(Outcome.completed, step=step, attempts=record.attempts)

    async def _migrate_database(self, config: DatabaseConfig,
                                record: records.MigrationRecord,
                                on_step: Callable[[int], Awaitable[None]]) -> int:
        """Apply the missing steps on the user's database; the version it is at after."""
        database = self._databases.of(config)
        limits = self.limits
        # The session's own statement limit bounds the reads; each step sets its own and
        # takes the advisory lock for its transaction.
        async with database.connection(Deadline(limits.instance_deadline_s)) as conn:
            async with conn.transaction():
                schema = await deployed_schema(conn)
            if schema is None:
                raise SchemaConflict("The byodb schema is missing from this database.",
                                     hint="Redeploy from Settings → Database.")
            if schema.instance_id != config.instance_id:
                raise SchemaConflict("This database is not the one deployed for the "
                                     "user (its instance id differs).")
            if schema.version >= record.to_version:
                return schema.version
            try:
                steps = steps_between(schema.version, record.to_version, steps=self.steps)
            except ValueError as exc:
                raise _Permanent(str(exc), code="no_step") from None
            if record.dry_run:
                await on_step(steps[-1][0])
                await self._with_lock_ladder(lambda: _rehearse(conn, steps, limits))
                return schema.version
            for version, statements in steps:
                await on_step(version)
                await self._with_lock_ladder(
                    functools.partial(_apply_step, conn, version, statements, limits))
            return record.to_version

    async def _with_lock_ladder(self, attempt: Callable[[], Awaitable[None]]) -> None:
        """Run ``attempt``; when it lost a lock wait or a deadlock, wait a rung of the
        ladder (with jitter, so many workers do not retry in step) and try again."""
        ladder = self.limits.lock_ladder_s
        for rung in range(len(ladder) + 1):
            try:
                await attempt()
                return
            except psycopg.Error as exc:
                if exc.sqlstate not in _LOCK_SQLSTATES:
                    raise
                if rung == len(ladder):
                    raise _Transient("lock_timeout", "The database kept a table locked; "
                                     "the migration will try again later.") from None
                await asyncio.sleep(ladder[rung] * random.uniform(0.5, 1.5))


def _local_limits(limits: MigrationLimits) -> tuple[str, tuple[str, str]]:
    """One statement setting this transaction's lock and statement timeouts."""
    return ("select pg_catalog.set_config('lock_timeout', %s, true), "
            "pg_catalog.set_config('statement_timeout', %s, true)",
            (f"{max(1, round(limits.lock_timeout_s * 1000))}ms",
             f"{max(1, round(limits.step_timeout_s * 1000))}ms"))


async def _locked_version(conn: psycopg.AsyncConnection, limits: MigrationLimits) -> int:
    """Set the transaction's limits, take the deploy lock for it (or give up: another
    migration or deploy runs), then read the version in ``byodb_meta``, its row locked until
    the transaction ends (one round trip: pipelined)."""
    async with conn.pipeline():
        await conn.execute(*_local_limits(limits))
        locked = await conn.execute("select pg_catalog.pg_try_advisory_xact_lock(%s)",
                                    (DEPLOY_LOCK_KEY,))
        cur = await conn.execute("select schema_version::int from byodb.byodb_meta "
                                 "where id = 1 for update")
    got = await locked.fetchone()
    if not got or got[0] is not True:
        raise _Transient("busy", "Another migration or deploy of this database is running.")
    row = await cur.fetchone()
    if row is None or not isinstance(row[0], int):
        raise SchemaConflict("byodb.byodb_meta records no schema version.")
    return int(row[0])


async def _apply_step(conn: psycopg.AsyncConnection, version: int,
                      statements: tuple[str, ...], limits: MigrationLimits) -> None:
    """One version step and the new version, in one transaction (or nothing). The
    statements go out pipelined: a step costs a few round trips, not one per statement
    (what matters for a database in another region)."""
    async with conn.transaction():
        current = await _locked_version(conn, limits)
        if current >= version:
            return  # applied meanwhile (by a run elsewhere): never twice
        if current != version - 1:
            raise SchemaConflict(f"the database is at schema version {current}, not "
                                 f"{version - 1} as step {version} needs")
        async with conn.pipeline():
            for statement in statements:
                await conn.execute(statement.encode())
            await conn.execute("update byodb.byodb_meta set schema_version = %s, "
                               "updated_at = now() where id = 1", (version,))


async def _rehearse(conn: psycopg.AsyncConnection, steps: list[tuple[int, tuple[str, ...]]],
                    limits: MigrationLimits) -> None:
    """Every step as the real run would apply it, then rolled back: what would fail."""
    async with conn.transaction(force_rollback=True):
        current = await _locked_version(conn, limits)
        async with conn.pipeline():
            for version, statements in steps:
                if version <= current:
                    continue
                for statement in statements:
                    await conn.execute(statement.encode())

"""Check one user's saved database and record what the check found.

:meth:`HealthChecks.check` runs :func:`~byodb.instances.health.check.check_database` on the
saved database within the health deadline; :meth:`HealthChecks.record` applies a result with
hysteresis (a change of status at once, through :class:`StateChanges`), and
:meth:`HealthChecks.record_facts` writes a sweep's facts and failure counts in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.errors import ByodbError
from byodb.instances.health.check import (
    CheckedInstance,
    HealthResult,
    HealthTransition,
    check_database,
    transition_for,
)
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.instances.lifecycle.databases import UserDatabases
from byodb.instances.lifecycle.states import ConnectionStatus
from byodb.maindb.tables import user_database_config as udc

HEALTH_BATCH = 500
"""Health facts are written this many instances per transaction."""


@dataclass(frozen=True)
class HealthLimits:
    """A check's deadline, and the failed checks in a row that put a user in ``error``."""

    timeout_s: float = 5.0
    failures: int = 2  # consecutive failed checks before connected → error


class HealthChecks:
    """Checks users' saved databases and records the results; one per process."""

    def __init__(self, main: AsyncEngine, databases: UserDatabases, changes: StateChanges,
                 limits: HealthLimits = HealthLimits()):
        self._main = main
        self._databases = databases
        self._changes = changes
        self.limits = limits

    def now(self) -> datetime:
        return self._changes.now()

    async def check(self, config: DatabaseConfig) -> HealthResult:
        """Check the saved database within the health deadline; changes nothing."""
        try:
            database = self._databases.of(config)
        except ByodbError as exc:  # unreadable credentials, a URL the guard now refuses
            return HealthResult.failed(exc.code, exc.message)
        return await check_database(database, instance_id=config.instance_id,
                                    timeout_s=self.limits.timeout_s)

    async def record(self, config: DatabaseConfig, result: HealthResult) -> HealthTransition:
        """Apply a check's result with hysteresis (:func:`transition_for`). A change of
        status is written here, at once (it drops the user's route and pool here and,
        by NOTIFY, everywhere: a recovered user works again without a retry); the check's
        facts and failure count are written for a whole sweep by :meth:`record_facts`."""
        failures = 0 if result.ok else config.consecutive_failures + 1
        transition = transition_for(config.connection_status, failures, result,
                                    self.limits.failures)
        if transition not in (HealthTransition.recovered, HealthTransition.down):
            return transition
        updated = await self._changes.update(
            config.user_id, expect_credential_version=config.credential_version,
            expect_connection=config.connection_status, consecutive_failures=failures,
            last_connection_test=self._changes.now(),
            connection=ConnectionStatus.connected if result.ok else ConnectionStatus.error,
            connection_error=result.message,
            connection_error_code=None if result.ok else result.code)
        return transition if updated is not None else HealthTransition.skipped

    async def record_facts(self, checks: Sequence[CheckedInstance]) -> None:
        """Record checks' facts (time, latency, code) and the failure counts in batches,
        not a transaction per instance. Not state changes: no NOTIFY, and each row only
        while it still has the credentials checked (and, for the count, the status the
        check saw — a transition already wrote its own)."""
        now = self._changes.now()
        facts = [{"uid": c.config.user_id, "cv": c.config.credential_version, "at": now,
                  "ms": c.result.latency_ms, "code": None if c.result.ok else c.result.code}
                 for c in checks]
        counts = [{"uid": c.config.user_id, "cv": c.config.credential_version,
                   "seen": c.config.connection_status.value,
                   "n": 0 if c.result.ok else c.config.consecutive_failures + 1}
                  for c in checks if c.transition in (
                      HealthTransition.healthy, HealthTransition.failing,
                      HealthTransition.still_down)
                  and (c.config.consecutive_failures != 0 or not c.result.ok)]
        same_row = (udc.c.user_id == bindparam("uid"),
                    udc.c.credential_version == bindparam("cv"))
        record_facts = udc.update().where(*same_row).values(
            last_health_check_at=bindparam("at"), health_latency_ms=bindparam("ms"),
            health_error_code=bindparam("code"))
        record_counts = udc.update().where(
            *same_row, udc.c.connection_status == bindparam("seen")).values(
            consecutive_failures=bindparam("n"))
        for start in range(0, max(len(facts), len(counts)), HEALTH_BATCH):
            async with self._main.begin() as conn:
                if facts[start:start + HEALTH_BATCH]:
                    await conn.execute(record_facts, facts[start:start + HEALTH_BATCH])
                if counts[start:start + HEALTH_BATCH]:
                    await conn.execute(record_counts, counts[start:start + HEALTH_BATCH])

"""The health check of one user database, and what its result means for the user's state.

A check goes through the guard (:class:`UserDatabase`), connects, reads ``byodb_meta`` and
times the round trip — all under one deadline that really stops it: the client-side
deadline cancels the connect or the query, and the socket is shut down at the same moment,
so a server that accepts TCP and never answers costs exactly one deadline.

A database that answers but lost its byodb schema (``schema_missing``), or holds a byodb
schema that is not the one deployed for this user (``schema_conflict``), is an error of its
own, never reported as "unreachable".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

import psycopg

from byodb.content.deploy import DeployedSchema, SchemaConflict, deployed_schema
from byodb.errors import ByodbError
from byodb.instances.connection.deadlines import Deadline
from byodb.instances.connection.failures import classify
from byodb.instances.connection.handle import UserDatabase
from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.instances.lifecycle.states import ConnectionStatus


class HealthCode(StrEnum):
    """The codes a check records besides the guard's connection codes (DESIGN.md §5)."""

    ok = "ok"
    unreachable = "unreachable"
    timeout = "timeout"
    schema_missing = "schema_missing"
    schema_conflict = "schema_conflict"
    check_failed = "check_failed"


_MESSAGES: dict[str, str] = {
    HealthCode.unreachable: "The database stopped answering.",
    HealthCode.timeout: "The database did not answer in time.",
    HealthCode.schema_missing: "The database answers, but the byodb schema is gone from it.",
    HealthCode.schema_conflict: "The database answers, but holds a byodb schema that is not "
                                "the one deployed for this account.",
    HealthCode.check_failed: "The health check failed; the database rejected a query.",
}


@dataclass(frozen=True)
class HealthResult:
    """One check's outcome: a code (``ok`` when healthy), a public sentence and timings."""

    code: str
    message: str | None = None
    latency_ms: int | None = None
    schema_version: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == HealthCode.ok

    @classmethod
    def failed(cls, code: str, message: str | None = None,
               latency_ms: int | None = None) -> HealthResult:
        return cls(code, message or _MESSAGES.get(code, _MESSAGES[HealthCode.check_failed]),
                   latency_ms)


class HealthTransition(StrEnum):
    """What a check did to the user's connection status (the sweep counts these)."""

    healthy = "healthy"        # connected, and stays so
    recovered = "recovered"    # error → connected
    failing = "failing"        # a failed check, below the threshold: still connected
    down = "down"              # connected → error now
    still_down = "still_down"  # in error, and the check failed again
    skipped = "skipped"        # the user's state moved on meanwhile: nothing recorded


@dataclass(frozen=True)
class CheckedInstance:
    """One instance's check in a sweep: the row as read, the result, what it did."""

    config: DatabaseConfig
    result: HealthResult
    transition: HealthTransition


def transition_for(status: ConnectionStatus, failures: int, result: HealthResult,
                   threshold: int) -> HealthTransition:
    """The hysteresis rule: ``connected → error`` after ``threshold`` consecutive failed
    checks (``failures`` counts them, this one included); ``error → connected`` on the
    first successful one."""
    if result.ok:
        return HealthTransition.recovered if status is ConnectionStatus.error \
            else HealthTransition.healthy
    if status is ConnectionStatus.error:
        return HealthTransition.still_down
    return HealthTransition.down if failures >= threshold else HealthTransition.failing


def _judge(schema: DeployedSchema | None, instance_id: UUID | None) -> HealthResult | None:
    """A failure when what ``byodb_meta`` says is not the schema deployed for the user."""
    if schema is None:
        return HealthResult.failed(HealthCode.schema_missing)
    if instance_id is not None and schema.instance_id != instance_id:
        return HealthResult.failed(HealthCode.schema_conflict)
    return None


async def check_database(database: UserDatabase, *, instance_id: UUID | None,
                         timeout_s: float) -> HealthResult:
    """Check ``database`` within ``timeout_s`` seconds; never raises for a failed check.

    The version read is reported, not judged: schema versions belong to the fleet
    migrations, and every supported version serves users (expand, then contract).
    """
    started = time.monotonic()

    def elapsed_ms() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        async with asyncio.timeout(timeout_s), \
                database.connection(Deadline(timeout_s)) as conn, conn.transaction():
            schema = await deployed_schema(conn)
    except SchemaConflict:
        return HealthResult.failed(HealthCode.schema_conflict, latency_ms=elapsed_ms())
    except ByodbError as exc:  # the guard's classified connection failures
        return HealthResult.failed(exc.code, exc.message)
    except (TimeoutError, psycopg.Error, OSError) as exc:
        classified = classify(exc, database.url)
        return HealthResult.failed(classified.code, classified.message)
    latency = elapsed_ms()
    failure = _judge(schema, instance_id)
    if failure is not None:
        return HealthResult(failure.code, failure.message, latency)
    assert schema is not None
    return HealthResult(HealthCode.ok, None, latency, schema.version)

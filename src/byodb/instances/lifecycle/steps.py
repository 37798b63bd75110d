"""What the lifecycle's long steps share: their limits, the retries of a transient failure,
a move's deadline, and an autocommit connection to main (moves need COPY).

Functions, not an object: the limits are read when a step starts (an operator tool or a
test may set the lifecycle's limits between two steps).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.content import latest_schema_version
from byodb.instances.connection.deadlines import Deadline
from byodb.instances.lifecycle.step_failures import DEFAULT_LADDER_S, Step, retrying

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class LifecycleLimits:
    """Deadlines of the lifecycle's operations, in seconds."""

    test_s: float = 15.0
    deploy_s: float = 300.0
    move_s: float = 1800.0
    # The content schema version new deploys create (BYODB_SCHEMA_TARGET, resolved by
    # byodb.content.resolve_schema_target); a database already past it is left as it is.
    schema_target: int = latest_schema_version()
    # A move's statements wait this long for a lock held in the user's database (their own
    # open transaction) before the step gives up and is retried on the ladder.
    lock_timeout_s: float = 5.0
    # Pauses (times a jitter) before a deploy or move step that failed transiently runs again.
    retry_ladder_s: tuple[float, ...] = DEFAULT_LADDER_S


def move_deadline(limits: LifecycleLimits) -> Deadline:
    """A move's connections: statements as long as the move may take, lock waits as
    long as ``lock_timeout_s`` (then the step is retried, and fails), the socket cut
    shortly after its deadline, whatever is still waiting on it."""
    return Deadline(limits.move_s, lock_timeout_s=limits.lock_timeout_s)


async def retrying_step(attempt: Callable[[], Awaitable[T]], *, user_id: str,
                        deadline_s: float, step: Step, limits: LifecycleLimits) -> T:
    """``attempt`` (a whole deploy or one move), run again after a transient failure
    on the ladder within ``deadline_s`` (:func:`.step_failures.retrying`)."""
    async def retry_note(exc: BaseException, attempt_number: int) -> None:
        log.info("retrying a step for user %r after a transient failure %s (%s, "
                 "retry %d)", user_id, step.where, type(exc).__name__, attempt_number)

    return await retrying(attempt, deadline_s=deadline_s, ladder_s=limits.retry_ladder_s,
                          on_retry=retry_note)


@asynccontextmanager
async def main_connection(main: AsyncEngine) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit psycopg connection to main from the main pool (moves need COPY)."""
    async with main.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        yield driver

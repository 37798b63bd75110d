"""What a failed deploy or move tells people, and the retries before it fails.

A deploy or a move that fails records one message naming **where** it was (the step: "at
step 14 of 41 (Creating table byodb.messages)", "while moving your content to your
database"), the **SQLSTATE** and the **server's own words** (redacted and bounded by
:func:`~byodb.instances.connection.failures.server_words`, the one classifier's). That
message is what Settings → Database, ``byodb instances show`` and the admin dashboard show
(``connection_error``), and what the one log line of the failure carries with the user id.

Before it fails, a **transient** failure — the connection lost, no free connection slot
(53300), a serialization failure or deadlock (40001, 40P01), a lock not granted within the
``lock_timeout`` (55P03, e.g. the owner's own open transaction holds a table) — is retried
on a short jittered ladder, within the step's deadline (:func:`retrying`). Deploys are one
transaction and moves merge idempotently, so running a step again is always safe.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from byodb.errors import ByodbError
from byodb.instances.connection.failures import server_words, sqlstate_of
from byodb.instances.connection.guard import ConnectionCheckError, DatabaseUrl

T = TypeVar("T")

TRANSIENT_SQLSTATES = frozenset({"53300", "40001", "40P01", "55P03", "57P01"})
"""Server answers worth another try: too many connections, a serialization failure, a
deadlock, a lock not granted in time, the server shutting the session down (a restart)."""
LOCK_SQLSTATES = frozenset({"55P03", "40P01"})

DEFAULT_LADDER_S = (0.5, 1.5, 4.0)
"""Pauses between the attempts of a step (each times a random 0.5 to 1.5, so jobs do not
retry in step); after the last one the step fails."""


@dataclass
class Step:
    """Where an operation is now, as the words that follow "failed" in its message."""

    where: str
    number: int | None = None
    """The deploy's statement number (for ``deployment_step``), when it is at one."""

    def at(self, where: str, number: int | None = None) -> None:
        self.where = where
        self.number = number


def is_transient(exc: BaseException) -> bool:
    """Whether running the step again may succeed (see :data:`TRANSIENT_SQLSTATES`)."""
    if isinstance(exc, ConnectionCheckError):
        # A connect that failed is already classified (its SQLSTATE is in its message): no
        # server answered, or one had no free connection slot.
        return exc.code == "unreachable" or "SQLSTATE 53300" in exc.message
    state = sqlstate_of(exc)
    if state is not None:
        return state in TRANSIENT_SQLSTATES or state.startswith("08")
    # No SQLSTATE: the connection itself broke (the server went away mid-step).
    return isinstance(exc, psycopg.OperationalError)


async def retrying(attempt: Callable[[], Awaitable[T]], *, deadline_s: float,
                   ladder_s: Sequence[float] = DEFAULT_LADDER_S,
                   on_retry: Callable[[BaseException, int], Awaitable[None]] | None = None
                   ) -> T:
    """Run ``attempt``; after a transient failure wait a rung of ``ladder_s`` and run it
    again, as long as the pause still ends within ``deadline_s`` (from now). The last
    failure is raised as it is. The caller's ``asyncio.timeout`` remains the hard limit."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + deadline_s
    for rung in range(len(ladder_s) + 1):
        try:
            return await attempt()
        except Exception as exc:
            if rung == len(ladder_s) or not is_transient(exc):
                raise
            pause = ladder_s[rung] * random.uniform(0.5, 1.5)
            if loop.time() + pause >= ends:
                raise
            if on_retry is not None:
                await on_retry(exc, rung + 1)
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def public_error(exc: BaseException, *, stage: str, step: Step | None = None,
                 url: DatabaseUrl | None = None) -> tuple[str, str]:
    """A message and code safe to store and show (no URL, password or content): ``stage``
    ("The deployment") failed ``step`` (where it was), and why — for a server's answer its
    SQLSTATE and its words (redacted with ``url``'s password, bounded). Without a step (a
    check, a fleet migration) the brief form of before: the SQLSTATE only."""
    if step is None:
        return _brief(exc, stage)
    failed = f"{stage} failed {step.where}"
    if isinstance(exc, ByodbError):
        return f"{failed}: {exc.message}", exc.code
    if isinstance(exc, TimeoutError):
        return f"{failed}: it did not finish in time; nothing was lost.", "timeout"
    sqlstate = sqlstate_of(exc)
    if sqlstate is not None:
        said = f"the database answered SQLSTATE {sqlstate}: {server_words(exc, url)}"
        if sqlstate == "42501":
            return (f"{failed}: {said}. The database user lacks a privilege this step "
                    "needs; nothing was lost.", "insufficient_privileges")
        if sqlstate in LOCK_SQLSTATES:
            return (f"{failed}: {said}. Another session on your database (an open "
                    "transaction?) kept a table byodb needs locked, also after retries; "
                    "nothing was lost. End that transaction, then retry.", "lock_timeout")
        return (f"{failed}: {said}. Nothing was lost; fix the cause on your database, then "
                "retry.", "step_failed")
    if isinstance(exc, psycopg.OperationalError | OSError):
        return (f"{failed}: the database stopped answering ({server_words(exc, url)}); "
                "nothing was lost.", "unreachable")
    return (f"{failed}: unexpected {type(exc).__name__}; nothing was lost.", "step_failed")


def _brief(exc: BaseException, stage: str) -> tuple[str, str]:
    """Without a step (a check, a fleet migration's record): the SQLSTATE, not the server's
    words — a fleet run's records are read by operators across many users' databases."""
    if isinstance(exc, ByodbError):
        return exc.message, exc.code
    if isinstance(exc, TimeoutError):
        return f"{stage} did not finish in time; nothing was lost.", "timeout"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return ("The database user lacks a privilege this step needs.",
                "insufficient_privileges")
    if isinstance(exc, psycopg.OperationalError | OSError):
        return "The database stopped answering.", "unreachable"
    sqlstate = sqlstate_of(exc)
    if sqlstate:
        return (f"{stage} failed: the database rejected a step (SQLSTATE {sqlstate}); "
                "nothing was lost.", "step_failed")
    return f"{stage} failed unexpectedly; nothing was lost.", "step_failed"

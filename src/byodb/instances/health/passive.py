"""Passive health: a routed request that succeeded on a user's database counts as a
successful health check, so the sweep need not wake that database to ask again.

Recording is cheap: :meth:`PassiveHealth.succeeded` only remembers the user in memory (no
I/O, no lock); :meth:`PassiveHealth.flush` writes what was remembered to main in batches —
every ``flush_interval_s`` from a background task, before each sweep of this process, and
at shutdown. A user is written at most once per ``resolution_s``: a busy user costs main
one row update a minute, never one per request.

What a flush writes is what a successful check writes (``last_health_check_at``, no error
code, no failures counted), and only where it cannot undo a newer fact: the row must still
have the credentials the request used, be ``connected`` (a recovery from ``error`` is the
sweep's to make, with its notices), and hold an older check. A failed connect is recorded
by the router at once (:func:`record_unreachable`); it is rare and changes the user's
state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, or_
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.states import ConnectionStatus
from byodb.maindb.tables import user_database_config as udc

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 10.0
"""Remembered successes are written to main this often (and before a sweep, at shutdown)."""
RESOLUTION_S = 60.0
"""A user's success is written at most this often; the sweep's idle interval is far longer."""
FLUSH_BATCH = 500
"""Rows per transaction when writing successes."""
FLUSH_DEADLINE_S = 30.0
"""A flush that main does not finish in this time is given up (the next one retries)."""

_RECORD = udc.update().where(
    udc.c.user_id == bindparam("uid"), udc.c.credential_version == bindparam("cv"),
    udc.c.connection_status == ConnectionStatus.connected.value,
    or_(udc.c.last_health_check_at.is_(None),
        udc.c.last_health_check_at < bindparam("at"))).values(
    last_health_check_at=bindparam("at"), health_error_code=None, consecutive_failures=0)


class PassiveHealth:
    """Successful routed requests of one process, remembered until written to main."""

    def __init__(self, main: AsyncEngine, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 flush_interval_s: float = FLUSH_INTERVAL_S,
                 resolution_s: float = RESOLUTION_S):
        self._main = main
        self._clock = clock
        self.flush_interval_s = flush_interval_s
        self._resolution = timedelta(seconds=resolution_s)
        self._pending: dict[str, tuple[int, datetime]] = {}
        self._written: dict[str, datetime] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    def succeeded(self, user_id: str, credential_version: int) -> None:
        """A routed transaction on the user's database committed (call from the loop)."""
        now = self._clock()
        written = self._written.get(user_id)
        if written is not None and now - written < self._resolution:
            return
        self._pending[user_id] = (credential_version, now)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    def forget(self, user_id: str) -> None:
        """Drop what is remembered of the user (their state changed: new facts rule)."""
        self._pending.pop(user_id, None)
        self._written.pop(user_id, None)

    async def flush(self) -> int:
        """Write the remembered successes to main; returns how many were written (rows
        that still qualified). A failure keeps them for the next flush."""
        async with self._flush_lock:
            pending, self._pending = self._pending, {}
            if not pending:
                return 0
            rows = [{"uid": user, "cv": version, "at": at}
                    for user, (version, at) in pending.items()]
            written = 0
            try:
                async with asyncio.timeout(FLUSH_DEADLINE_S):
                    for start in range(0, len(rows), FLUSH_BATCH):
                        async with self._main.begin() as conn:
                            result = await conn.execute(_RECORD, rows[start:start + FLUSH_BATCH])
                        written += max(result.rowcount, 0)
            except BaseException:
                # Keep what was not written (newer successes noted meanwhile win).
                for user, seen in pending.items():
                    self._pending.setdefault(user, seen)
                raise
            self._written.update({user: at for user, (_, at) in pending.items()})
            cutoff = self._clock() - self._resolution
            self._written = {u: at for u, at in self._written.items() if at >= cutoff}
            return written

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except Exception as exc:  # main unreachable now: the next flush retries
                log.warning("could not record passive health checks: %s", type(exc).__name__)

    async def close(self) -> None:
        """Stop the background flushes and write what is left (best effort)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            await self.flush()
        except Exception as exc:
            log.warning("could not record passive health checks at shutdown: %s",
                        type(exc).__name__)


async def record_unreachable(changes: StateChanges, user_id: str, credential_version: int,
                             message: str, code: str = "unreachable") -> None:
    """Record that a routed call could not use the user's database: ``error`` at once,
    and a failed health check (the sweep probes it from now on)."""
    try:
        now = changes.now()
        await changes.update(user_id, connection=ConnectionStatus.error,
                             expect_credential_version=credential_version,
                             connection_error=message, connection_error_code=code,
                             last_connection_test=now, last_health_check_at=now,
                             health_error_code=code,
                             consecutive_failures=udc.c.consecutive_failures + 1)
    except Exception:  # the original failure matters more than bookkeeping
        log.exception("could not record a connection failure for a user")

"""Readiness (``GET /readyz``): may this process take traffic? Liveness (``/healthz``) only
says the process serves HTTP; readiness says main is reachable and migrated for this
release, so a load balancer sends requests only to processes that can answer them.

The check, in order, within one deadline (``BYODB_READY_TIMEOUT``, 2 s by default):

1. main answers a query (over the app's own pool: what requests would use);
2. main's Alembic revision is this release's script head;
3. the content schema ``byodb`` is deployed on main, at least at this release's version
   (a newer version is fine: content steps are additive, DESIGN.md §7).

The first failure is the reason. Reasons name no URL, host or password: a probe's answer
is visible to whoever can reach the port.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.content.deploy import SchemaConflict, deployed_schema
from byodb.content.version import latest_schema_version
from byodb.maindb.migrate import alembic_config

log = logging.getLogger(__name__)


def alembic_head(main_url: str) -> str:
    """This release's main migration head (read from the scripts, not from a database)."""
    heads = ScriptDirectory.from_config(alembic_config(main_url)).get_heads()
    if len(heads) != 1:  # two heads is a packaging error; never guess which one counts
        raise RuntimeError(f"main migrations have {len(heads)} heads, expected one")
    return heads[0]


class ReadinessProbe:
    def __init__(self, main: AsyncEngine, *, head: str, known_revisions: frozenset[str],
                 timeout_s: float):
        self._main = main
        self._head = head
        self._known = known_revisions
        self._timeout_s = timeout_s
        self._running: asyncio.Task[str | None] | None = None
        self._last: str | None = None  # the last reason logged ("" = ready)

    @classmethod
    def for_main(cls, main: AsyncEngine, main_url: str, *, timeout_s: float) -> ReadinessProbe:
        scripts = ScriptDirectory.from_config(alembic_config(main_url))
        known = frozenset(rev.revision for rev in scripts.walk_revisions())
        return cls(main, head=alembic_head(main_url), known_revisions=known,
                   timeout_s=timeout_s)

    async def not_ready_reason(self) -> str | None:
        """None when ready, else a sentence saying why not; within the deadline.

        One check runs at a time and concurrent probes share it, so a load balancer
        probing often never piles queries on a slow main. The answer does not wait for a
        timed-out check to clean up (psycopg's cancel of a query on a hung server can
        take seconds): that finishes in the background."""
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._check_with_deadline())
        done, _ = await asyncio.wait({self._running}, timeout=self._timeout_s)
        reason = self._running.result() if done else self._too_slow()
        self._log_change(reason)
        return reason

    def _too_slow(self) -> str:
        return f"the main database did not answer within {self._timeout_s:g} s"

    async def _check_with_deadline(self) -> str | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._check()
        except TimeoutError:
            return self._too_slow()
        except (OSError, SQLAlchemyError, psycopg.Error):
            # The driver's text names host and port: only the fact is reported.
            return "the main database is unreachable"
        except Exception as exc:  # fail closed: a probe that breaks says "not ready"
            log.error("readiness check failed: %s", type(exc).__name__)
            return f"the readiness check failed ({type(exc).__name__})"

    async def _check(self) -> str | None:
        async with self._main.connect() as conn:
            # The server stops the queries too, not only this side's deadline.
            await conn.execute(text("select pg_catalog.set_config('statement_timeout', "
                                    ":ms, true)"),
                               {"ms": f"{max(1, int(self._timeout_s * 1000))}ms"})
            return await self._migration_reason(conn) or await self._content_reason(conn)

    async def _migration_reason(self, conn: AsyncConnection) -> str | None:
        # Unqualified, as Alembic itself finds its table (the connection's search_path).
        exists = (await conn.execute(text(
            "select pg_catalog.to_regclass('alembic_version') is not null"))).scalar()
        rows = (await conn.execute(text("select version_num from alembic_version")))\
            .scalars().all() if exists else []
        if not rows:
            return "main has no migrations applied; run `byodb db upgrade`"
        if len(rows) > 1 or rows[0] != self._head:
            current = ", ".join(sorted(str(r) for r in rows))
            if all(r in self._known for r in rows):
                return (f"main's migrations are behind this release (at {current}, needs "
                        f"{self._head}); run `byodb db upgrade`")
            return (f"main is at migration {current[:64]}, which this release does not know "
                    "(a newer release migrated it)")
        return None

    async def _content_reason(self, conn: AsyncConnection) -> str | None:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        try:
            deployed = await deployed_schema(driver)
        except SchemaConflict:
            return "main's content schema 'byodb' is not one byodb deployed"
        needed = latest_schema_version()
        if deployed is None:
            return "the content schema is not deployed on main; run `byodb db upgrade`"
        if deployed.version < needed:
            return (f"main's content schema is at version {deployed.version}, this release "
                    f"needs {needed}; run `byodb db upgrade`")
        return None

    def _log_change(self, reason: str | None) -> None:
        # One line when readiness changes, not one per probe.
        state = reason or ""
        if state == self._last:
            return
        self._last = state
        if reason is None:
            log.info("ready: main is reachable and migrated")
        else:
            log.warning("not ready: %s", reason)

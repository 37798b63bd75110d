"""One user database, reached one way: :class:`UserDatabase`.

Every physical connection — a routed request's pooled connection, a deploy, a move, a
health check — goes through the guard again (SQLAlchemy's ``async_creator``), so a provider
whose address changes does not strand the user and checked addresses are never frozen for
a pool's lifetime; every connection carries the session limits of :class:`SessionLimits`
(``search_path`` pinned, server-side time limits) and the client-side connect deadline.
All of it is async: no user-database work runs on a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import psycopg.sql
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from byodb.content.deploy import DeployedSchema, deployed_schema
from byodb.instances.guard import (
    CheckedTarget,
    ConnectionCheckError,
    DatabaseUrl,
    GuardPolicy,
    client_auth_refusal,
    forget_host_libpq_environment,
)
from byodb.instances.probe import classify_connect_error


class UserDatabase:
    """A user's database: guarded connections, a small pool for routed requests, and the
    reads the lifecycle needs. Holds the parsed URL (its password a redacted secret)."""

    def __init__(self, url: DatabaseUrl, policy: GuardPolicy, *, pool_size: int = 2,
                 pool_timeout_s: float = 10.0):
        self.url = url
        self._policy = policy
        self._pool_size = pool_size
        self._pool_timeout_s = pool_timeout_s
        self._engine: AsyncEngine | None = None

    def __repr__(self) -> str:
        return f"UserDatabase({self.url.redacted()!r})"

    async def target(self) -> CheckedTarget:
        """The URL checked by the guard now (DNS resolved again, addresses classified)."""
        return await self._policy.check(self.url)

    async def _open(self, *, autocommit: bool) -> psycopg.AsyncConnection:
        target = await self.target()
        # libpq reads PG* variables for what connect_kwargs() cannot pin (PGSERVICE, PGTZ);
        # removing them here, right before the connection, covers any set after startup.
        forget_host_libpq_environment()
        try:
            return await asyncio.wait_for(
                psycopg.AsyncConnection.connect(**target.connect_kwargs(),
                                                autocommit=autocommit),
                self._policy.connect_timeout_s + 1)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise (client_auth_refusal(exc, target)
                   or classify_connect_error(exc, target)) from None

    async def connect(self) -> psycopg.AsyncConnection:
        """A new autocommit connection (the caller closes it); failures are classified
        :class:`ConnectionCheckError`\\ s."""
        return await self._open(autocommit=True)

    @asynccontextmanager
    async def connection(self, *, statement_timeout_s: float | None = None,
                         sever_after_s: float | None = None
                         ) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection for one operation; ``statement_timeout_s`` raises the session's
        statement limit for long work (a deploy, a move's COPY) that has its own deadline.

        ``sever_after_s``: past this, the socket is shut down whatever is waiting on it. The
        caller's own deadline cancels first; this catches what a cancellation cannot end —
        e.g. the ROLLBACK that follows it, sent to a server that stopped answering.
        """
        conn = await self.connect()
        watchdog = (asyncio.get_running_loop().call_later(sever_after_s, _sever, conn)
                    if sever_after_s is not None else None)
        try:
            if statement_timeout_s is not None:
                await conn.execute(psycopg.sql.SQL("set statement_timeout = {}").format(
                    psycopg.sql.Literal(max(1, round(statement_timeout_s * 1000)))))
            yield conn
        finally:
            if watchdog is not None:
                watchdog.cancel()
            await conn.close()

    @property
    def engine(self) -> AsyncEngine:
        """The pooled async engine routed requests use (built on first use).

        A connection that sat idle in the pool is pinged before a request gets it and
        replaced when it died with the server (an outage, a restart), so a stale pool never
        blocks a user by itself; a connection handed back moments ago is not pinged, which
        keeps busy users at one round trip less per transaction than ``pool_pre_ping``.
        """
        if self._engine is None:
            async def creator() -> psycopg.AsyncConnection:
                return await self._open(autocommit=False)

            engine = create_async_engine(
                "postgresql+psycopg://",
                async_creator=creator,
                pool_size=self._pool_size,
                max_overflow=self._pool_size,
                pool_timeout=self._pool_timeout_s,
                pool_recycle=600,
            )
            _ping_idle_connections(engine)
            self._engine = engine
        return self._engine

    async def deployed_schema(self) -> DeployedSchema | None:
        """What ``byodb.byodb_meta`` says (validated); None when nothing is deployed."""
        async with self.connection() as conn:
            return await deployed_schema(conn)

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def _sever(conn: psycopg.AsyncConnection) -> None:
    """Shut the connection's socket down so every wait on it ends at once (closing the
    descriptor itself under a pending wait would leave that wait hanging)."""
    if conn.closed:
        return
    try:
        duplicate = os.dup(conn.pgconn.socket)
    except (psycopg.OperationalError, OSError):
        return
    with socket.socket(fileno=duplicate) as sock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


PING_AFTER_IDLE_S = 1.0
"""A pooled connection idle for longer than this is pinged before it is handed out."""


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Pessimistic disconnect handling for idle connections only (SQLAlchemy's checkout
    event: raising ``DisconnectionError`` makes the pool replace the connection)."""
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def remember_idle_since(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry,
                     proxy: PoolProxiedConnection) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise DisconnectionError("an idle pooled connection died")


__all__ = ["ConnectionCheckError", "UserDatabase"]

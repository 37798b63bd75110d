"""One user database, reached one way: :class:`UserDatabase`.

Every physical connection — a routed request's pooled connection, a deploy, a move, a
health check — goes through the guard again (SQLAlchemy's ``async_creator``), so a provider
whose address changes does not strand the user and checked addresses are never frozen for
a pool's lifetime; every transaction begins with the session settings of
:mod:`byodb.instances.connection.session` (``search_path`` pinned, server-side time limits),
and every connection with the client-side connect deadline.
All of it is async: no user-database work runs on a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection, QueuePool

from byodb.content.deploy import DeployedSchema, deployed_schema
from byodb.instances.connection.deadlines import Deadline
from byodb.instances.connection.failures import classify
from byodb.instances.connection.guard import (
    CheckedTarget,
    ConnectionCheckError,
    DatabaseUrl,
    GuardPolicy,
    client_auth_refusal,
)
from byodb.instances.connection.hostenv import forget_host_libpq_environment
from byodb.instances.connection.session import SessionLimits, UserConnection
from byodb.instances.connection.tls import CaCertificate


class UserDatabase:
    """A user's database: guarded connections, a small pool for routed requests, and the
    reads the lifecycle needs. Holds the parsed URL (its password a redacted secret)."""

    def __init__(self, url: DatabaseUrl, policy: GuardPolicy, *, pool_size: int = 2,
                 pool_timeout_s: float = 10.0, idle_timeout_s: float = 60.0,
                 ca_certificate: CaCertificate | None = None):
        self.url = url
        self.ca_certificate = ca_certificate
        self._policy = policy
        self._pool_size = pool_size
        self._pool_timeout_s = pool_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._engine: AsyncEngine | None = None
        self._idle: _IdleCloser | None = None

    def __repr__(self) -> str:
        return f"UserDatabase({self.url.redacted()!r})"

    async def target(self) -> CheckedTarget:
        """The URL checked by the guard now (DNS resolved again, addresses classified),
        with the user's CA certificate where they gave one."""
        target = await self._policy.check(self.url)
        if self.ca_certificate is None:
            return target
        return dataclasses.replace(target,
                                   ca_file=self.ca_certificate.file_in(self._policy.ca_dir))

    async def _open(self, limits: SessionLimits | None = None) -> UserConnection:
        target = await self.target()
        # libpq reads PG* variables for what connect_kwargs() cannot pin (PGSERVICE, PGTZ);
        # removing them here, right before the connection, covers any set after startup.
        forget_host_libpq_environment()
        try:
            async with asyncio.timeout(self._policy.connect_timeout_s + 1):
                conn = await UserConnection.connect(**target.connect_kwargs(), autocommit=True,
                                                    prepare_threshold=None)
                try:
                    await conn.find_vector_schema()
                except BaseException:
                    await conn.close()
                    raise
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise (client_auth_refusal(exc, target)
                   or classify(exc, target.url)) from None
        conn.limits = limits or target.limits
        return conn

    async def connect(self, limits: SessionLimits | None = None) -> UserConnection:
        """A new connection (the caller closes it) whose transactions carry ``limits`` (the
        policy's by default); failures are classified :class:`ConnectionCheckError`\\ s."""
        return await self._open(limits)

    @asynccontextmanager
    async def connection(self, deadline: Deadline | None = None
                         ) -> AsyncIterator[UserConnection]:
        """A connection for one operation under ``deadline``: its transactions carry the
        server limits derived from it, and past it (plus a grace) the socket is shut down
        whatever is waiting on it. The caller's ``asyncio.timeout(deadline.seconds)``
        cancels first; the cut ends what a cancellation cannot — e.g. the ROLLBACK that
        follows it, sent to a server that stopped answering. Without a deadline: the
        policy's request limits and no cut."""
        limits = deadline.session() if deadline is not None else self._policy.limits
        sever_after_s = deadline.sever_after_s if deadline is not None else None
        conn = await self.connect(limits)
        watchdog = (asyncio.get_running_loop().call_later(sever_after_s, _sever, conn)
                    if sever_after_s is not None else None)
        try:
            yield conn
        finally:
            if watchdog is not None:
                watchdog.cancel()
            await conn.close()

    @property
    def engine(self) -> AsyncEngine:
        """The pooled async engine routed requests use (built on first use).

        Each transaction begins with the session settings (:func:`_begin_with_settings`).
        A connection that sat idle in the pool is pinged before a request gets it and
        replaced when it died with the server (an outage, a restart), so a stale pool never
        blocks a user by itself; a connection handed back moments ago is not pinged, which
        keeps busy users at one round trip less per transaction than ``pool_pre_ping``.
        Connections idle for ``idle_timeout_s`` are closed and nothing pings them while they
        wait, so a database that scales to zero can sleep; with 0 nothing is pooled.
        """
        if self._engine is None:
            async def creator() -> UserConnection:
                return await self._open()

            pooling: dict[str, Any] = (
                {"poolclass": NullPool} if self._idle_timeout_s <= 0 else
                {"pool_size": self._pool_size, "max_overflow": self._pool_size,
                 "pool_timeout": self._pool_timeout_s, "pool_recycle": 600})
            engine = create_async_engine("postgresql+psycopg://", async_creator=creator,
                                         **pooling)
            event.listen(engine.sync_engine, "begin", _begin_with_settings)
            if self._idle_timeout_s > 0:
                _ping_idle_connections(engine)
                self._idle = _IdleCloser(engine, self._idle_timeout_s)
            self._engine = engine
        return self._engine

    async def deployed_schema(self) -> DeployedSchema | None:
        """What ``byodb.byodb_meta`` says (validated); None when nothing is deployed."""
        async with self.connection() as conn, conn.transaction():
            return await deployed_schema(conn)

    async def dispose(self) -> None:
        """Close the pooled connections. One still serving a request is closed when it is
        handed back (:meth:`_IdleCloser.retire`): SQLAlchemy would return it to the old
        pool, open until garbage collection, keeping a database that could sleep awake."""
        if self._idle is not None:
            self._idle.retire()
            self._idle = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def _begin_with_settings(conn: Connection) -> None:
    """SQLAlchemy's ``begin`` event: send ``BEGIN`` with the session settings in one round
    trip (the connection is in autocommit mode, so nothing else begins). A routed snapshot
    (``execution_options(byodb_snapshot=True)``) begins repeatable read, read only."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, UserConnection)
    snapshot = bool(conn.get_execution_options().get("byodb_snapshot", False))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(raw.begin_command(snapshot=snapshot))
    finally:
        cursor.close()


class _IdleCloser:
    """Closes a pool's connections once none was used for ``idle_s`` (a timer re-armed at
    every check-in; nothing is sent to the server while waiting); once retired (its engine
    disposed), closes each connection as it is checked in."""

    def __init__(self, engine: AsyncEngine, idle_s: float) -> None:
        self._engine = engine
        self._idle_s = idle_s
        self._timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None
        self._retired = False
        # The listener stays with the pools that dispose() makes from this one (SQLAlchemy
        # hands a pool's events to its successor) and with the old pool, to which a
        # connection out at the time is checked in.
        event.listen(engine.sync_engine.pool, "checkin", self._arm)

    def _arm(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        if self._retired:
            if dbapi_connection is not None:
                record.invalidate()  # closes it now (the pool keeps an empty record)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a check-in outside the loop (a finalizer): nothing to arm
            return
        self._timer = loop.call_later(self._idle_s, self._expire)

    def _expire(self) -> None:
        self._timer = None
        pool = self._engine.sync_engine.pool
        if isinstance(pool, QueuePool) and pool.checkedout() == 0 and pool.checkedin():
            # dispose() closes the idle connections and starts an empty pool; a request
            # that comes later opens a new connection (and wakes the database) as usual.
            self._closing = asyncio.create_task(self._engine.dispose())

    def retire(self) -> None:
        """The engine was disposed: no more timers; close what comes back."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._retired = True


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

"""Session settings that every pooler passes through: applied at the start of each
transaction, never through the ``options`` startup parameter (PgBouncer and Supavisor refuse
it) and never as session state (a transaction pooler hands the next transaction another
server connection, and may reset ``search_path`` to empty in between).

Each transaction on a user's database starts with one simple-protocol round trip::

    BEGIN; SELECT pg_catalog.set_config('search_path', 'pg_catalog, byodb, <pgvector's
    schema>', true), pg_catalog.set_config('statement_timeout', …, true), …

so pinning costs one round trip no more than the plain ``BEGIN`` it replaces. pgvector's
schema is found in ``pg_extension`` when a connection opens (wherever the provider put the
extension: ``public`` on Neon and RDS, ``extensions`` on Supabase); where it was not there
yet (before a deploy created it), the statement looks it up itself, on the server. That
lookup names every function and operator with its schema: before it runs, the owner's role
settings decide the search path, and their own operators must not take part in setting
ours.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import pq

from byodb.content.deploy import PGVECTOR_SCHEMA_SQL
from byodb.content.tables import CONTENT_SCHEMA

_VECTOR_SCHEMA = (
    "(select pg_catalog.quote_ident(n.nspname) from pg_catalog.pg_extension e "
    "join pg_catalog.pg_namespace n on n.oid operator(pg_catalog.=) e.extnamespace "
    "where e.extname operator(pg_catalog.=) 'vector'::pg_catalog.name)")
SEARCH_PATH_SQL = (
    f"'pg_catalog, {CONTENT_SCHEMA}' operator(pg_catalog.||) coalesce(', ' "
    f"operator(pg_catalog.||) {_VECTOR_SCHEMA}, '')")
"""The pinned search path as an SQL expression: ``pg_catalog`` first, so an owner's functions
and operators never shadow built-ins; then the content schema; then pgvector's schema."""


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]{0,62}")


def search_path_sql(vector_schema: str | None) -> str:
    """The search path as an SQL expression: a constant when pgvector's schema is known and
    a plain lower-case name (what providers use), else looked up on the server (a catalog
    join, several times the cost of the constant, so only when it must)."""
    if vector_schema is not None and _PLAIN_NAME.fullmatch(vector_schema):
        return f"'pg_catalog, {CONTENT_SCHEMA}, {vector_schema}'"
    return SEARCH_PATH_SQL


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@dataclass(frozen=True)
class SessionLimits:
    """The server-side limits of a transaction on a user's database (set with the search
    path at its start): no statement, lock wait or idle transaction of ours outlives them."""

    statement_timeout_s: float = 25.0
    lock_timeout_s: float = 5.0
    idle_in_transaction_timeout_s: float = 60.0

    def with_statement_timeout(self, seconds: float) -> SessionLimits:
        return replace(self, statement_timeout_s=seconds,
                       idle_in_transaction_timeout_s=max(self.idle_in_transaction_timeout_s,
                                                         seconds))

    def begin_command(self, *, snapshot: bool = False,
                      isolation: psycopg.IsolationLevel | None = None,
                      vector_schema: str | None = None) -> str:
        """``BEGIN`` (at ``isolation``; a ``snapshot`` is repeatable read, read only) and
        the settings, as one simple-protocol query (no parameters: every value is a number
        of ours or a constant)."""
        if snapshot:
            begin = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
        elif isolation is not None:
            begin = "BEGIN ISOLATION LEVEL " + isolation.name.replace("_", " ")
        else:
            begin = "BEGIN"
        return (
            f"{begin}; SELECT pg_catalog.set_config('search_path', "
            f"{search_path_sql(vector_schema)}, true), "
            f"pg_catalog.set_config('statement_timeout', '{_ms(self.statement_timeout_s)}', "
            "true), "
            f"pg_catalog.set_config('lock_timeout', '{_ms(self.lock_timeout_s)}', true), "
            "pg_catalog.set_config('idle_in_transaction_session_timeout', "
            f"'{_ms(self.idle_in_transaction_timeout_s)}', true)")


class UserConnection(psycopg.AsyncConnection[Any]):
    """A connection to a user's database. It is in autocommit mode, and each outer
    :meth:`transaction` begins with the session settings (inner ones are savepoints, as
    psycopg makes them). A statement run outside a transaction gets one of its own, so no
    statement ever runs without the pinned search path and time limits. It never prepares
    statements on the server (a transaction pooler would lose them)."""

    limits: SessionLimits = SessionLimits()
    vector_schema: str | None = None
    """pgvector's schema as found when the connection opened (None: looked up per
    transaction on the server, e.g. before a deploy created the extension)."""

    @asynccontextmanager
    async def transaction(self, savepoint_name: str | None = None,  # type: ignore[override]
                          force_rollback: bool = False) -> AsyncIterator[Any]:
        if self.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            async with super().transaction(savepoint_name, force_rollback) as inner:
                yield inner
            return
        await self.begin()
        try:
            yield None
        except BaseException:
            await self._end("ROLLBACK")
            raise
        await self._end("ROLLBACK" if force_rollback else "COMMIT")

    async def find_vector_schema(self) -> None:
        """Remember pgvector's schema (a catalog read, outside any transaction: every name
        in it is qualified, so the owner's search path cannot shape it)."""
        cur = await super().execute(PGVECTOR_SCHEMA_SQL)
        row = await cur.fetchone()
        self.vector_schema = str(row[0]) if row is not None else None

    def begin_command(self, *, snapshot: bool = False) -> str:
        """``BEGIN`` with this connection's settings, at its ``isolation_level``."""
        return self.limits.begin_command(snapshot=snapshot, isolation=self.isolation_level,
                                         vector_schema=self.vector_schema)

    async def begin(self, *, snapshot: bool = False) -> None:
        """Start a transaction with the session settings (one round trip)."""
        await super().execute(self.begin_command(snapshot=snapshot))

    async def _end(self, command: str) -> None:
        if self.closed or self.pgconn.transaction_status == pq.TransactionStatus.IDLE:
            return
        if command == "ROLLBACK" and self.pgconn.status != pq.ConnStatus.OK:
            return
        await super().execute(command)

    async def execute(self, query: Any, params: Any = None, *,  # type: ignore[override]
                      prepare: bool | None = None, binary: bool = False) -> Any:
        if self.pgconn.transaction_status == pq.TransactionStatus.IDLE:
            # A client-side cursor holds its whole result, so it may be read after COMMIT.
            async with self.transaction():
                return await super().execute(query, params, prepare=prepare, binary=binary)
        return await super().execute(query, params, prepare=prepare, binary=binary)

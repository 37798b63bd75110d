"""Deploying the content schema over a connection: main (users without their own database)
or a user's database. The one reader of a database's deployed version lives here too.

A deploy is one transaction (PostgreSQL DDL is transactional): it dies leaving the database
as it was, or commits complete; re-running on a deployed database is a no-op, and a database
at an older version gets the missing version steps. An advisory lock inside the transaction
keeps two deploys of one database from racing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from byodb.content.ddl import content_schema_statements, known_schema_versions
from byodb.content.steps import steps_between
from byodb.content.tables import CONTENT_SCHEMA
from byodb.content.version import CONTENT_SCHEMA_VERSION
from byodb.errors import ByodbError

# pg_advisory_xact_lock key for "deploying/migrating the byodb schema of this database".
DEPLOY_LOCK_KEY = 0x6279_6F64_6462  # "byoddb"
# A version number read from a database is untrusted: anything outside this is refused.
_PLAUSIBLE_VERSIONS = range(1, 10_000)

Progress = Callable[[int, int, str], Awaitable[None]]


class DeployError(ByodbError):
    code = "deploy_failed"
    status = 500


class SchemaConflict(ByodbError):
    """The database's ``byodb`` schema is not one byodb deployed (or is unreadable)."""

    code = "schema_conflict"
    status = 422


@dataclass(frozen=True)
class DeployOutcome:
    action: str  # "created" | "upgraded" | "unchanged"
    from_version: int | None
    version: int
    instance_id: uuid.UUID


@dataclass(frozen=True)
class DeployedSchema:
    """What ``byodb.byodb_meta`` says about a database."""

    version: int
    instance_id: uuid.UUID


async def deployed_schema(conn: psycopg.AsyncConnection) -> DeployedSchema | None:
    """The byodb schema deployed on ``conn``'s database; None when there is none (or an
    empty ``byodb`` schema). Raises :class:`SchemaConflict` for a ``byodb`` schema that
    byodb did not make. What the database answers is validated, never trusted."""
    cur = await conn.execute(
        "select count(c.oid) from pg_catalog.pg_namespace n "
        "left join pg_catalog.pg_class c on c.relnamespace = n.oid "
        "where n.nspname = %s group by n.oid", (CONTENT_SCHEMA,))
    row = await cur.fetchone()
    if row is None or row[0] == 0:
        return None
    cur = await conn.execute("select pg_catalog.to_regclass('byodb.byodb_meta') is not null")
    has_meta = await cur.fetchone()
    if not has_meta or has_meta[0] is not True:
        raise SchemaConflict("This database already has a 'byodb' schema that byodb did not "
                             "create.", hint="Use a dedicated database, or rename or drop the "
                             "existing 'byodb' schema.")
    try:
        cur = await conn.execute(
            "select schema_version::int, instance_id::text from byodb.byodb_meta where id = 1")
        rows = await cur.fetchmany(2)
    except psycopg.DataError:
        rows = []
    if len(rows) != 1:
        raise SchemaConflict("byodb.byodb_meta exists but records no schema version.",
                             hint="Drop the 'byodb' schema and deploy again.")
    version, instance = rows[0]
    unreadable = SchemaConflict("byodb.byodb_meta holds values byodb never writes.",
                                hint="Drop the 'byodb' schema and deploy again.")
    if not isinstance(version, int) or version not in _PLAUSIBLE_VERSIONS:
        raise unreadable
    try:
        return DeployedSchema(version, uuid.UUID(str(instance)))
    except ValueError:
        raise unreadable from None


PGVECTOR_SCHEMA_SQL = (
    "select n.nspname::text from pg_catalog.pg_extension e join pg_catalog.pg_namespace n "
    "on n.oid operator(pg_catalog.=) e.extnamespace "
    "where e.extname operator(pg_catalog.=) 'vector'::pg_catalog.name")
"""The schema pgvector is installed in (no row: not installed). Every name and operator is
qualified: it may run under the owner's search path."""


async def pgvector_schema(conn: psycopg.AsyncConnection) -> str | None:
    """The schema pgvector is installed in on ``conn``'s database, or None."""
    cur = await conn.execute(PGVECTOR_SCHEMA_SQL)
    row = await cur.fetchone()
    return str(row[0]) if row is not None else None


async def usual_extension_schema(conn: psycopg.AsyncConnection) -> str:
    """Where a provider would put pgvector: ``extensions`` where that schema exists
    (Supabase's convention), else ``public``."""
    cur = await conn.execute("select pg_catalog.to_regnamespace('extensions') is not null")
    row = await cur.fetchone()
    return "extensions" if row is not None and row[0] is True else "public"


async def ensure_pgvector(conn: psycopg.AsyncConnection) -> str:
    """pgvector's schema on ``conn``'s database, creating the extension in the usual place
    when it is missing (in the caller's transaction; raises when the role may not). The
    transaction's search path then reaches it: ``pg_catalog``, the content schema, it."""
    schema = await pgvector_schema(conn)
    if schema is None:
        schema = await usual_extension_schema(conn)
        await conn.execute(sql.SQL("create extension if not exists vector schema {}").format(
            sql.Identifier(schema)))
    await conn.execute("select pg_catalog.set_config('search_path', %s, true)",
                       (f"pg_catalog, {CONTENT_SCHEMA}, {_quote_ident(schema)}",))
    return schema


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _no_progress(step: int, total: int, label: str) -> None:
    return None


async def deploy_content_schema(
    conn: psycopg.AsyncConnection,
    *,
    progress: Progress | None = None,
    target_version: int = CONTENT_SCHEMA_VERSION,
) -> DeployOutcome:
    """Bring ``conn``'s database to ``target_version`` in one transaction: an empty one is
    created at that version (its DDL, not the latest's), an older one gets the steps.

    ``conn`` is in autocommit mode (the transaction is ours). Time limits are the
    caller's: server-side ones on the connection, a client-side deadline around the call.
    ``progress(step, total, label)`` is awaited as statements run.
    """
    report = progress or _no_progress
    if target_version not in known_schema_versions():
        raise DeployError(f"schema version {target_version} is not one this release knows",
                          code="unsupported_version")
    async with conn.transaction():
        await conn.execute("select pg_catalog.pg_advisory_xact_lock(%s)", (DEPLOY_LOCK_KEY,))
        await ensure_pgvector(conn)
        current = await deployed_schema(conn)
        if current is None:
            creation = content_schema_statements(version=target_version)
            total = len(creation) + 1
            for number, statement in enumerate(creation, start=1):
                await report(number, total, _label(statement))
                await conn.execute(statement.encode())
            instance_id = uuid.uuid4()
            await conn.execute(
                "insert into byodb.byodb_meta (id, schema_version, instance_id) "
                "values (1, %s, %s)", (target_version, instance_id))
            outcome = DeployOutcome("created", None, target_version, instance_id)
        else:
            if current.version not in known_schema_versions():
                raise DeployError(
                    f"the database is at schema version {current.version}, newer than this "
                    "release knows", code="unsupported_version")
            # Past the target (the operator lowered it to hold a rollout): kept as it is,
            # never downgraded; the code works with every supported version.
            reached = max(current.version, target_version)
            steps = steps_between(current.version, reached)
            total = sum(len(s) for _, s in steps) + 1
            number = 0
            for version, statements in steps:
                for statement in statements:
                    number += 1
                    await report(number, total, f"Version {version}: {_label(statement)}")
                    await conn.execute(statement.encode())
            if steps:
                await conn.execute("update byodb.byodb_meta set schema_version = %s, "
                                   "updated_at = now() where id = 1", (reached,))
            outcome = DeployOutcome("upgraded" if steps else "unchanged", current.version,
                                    reached, current.instance_id)
        await report(total, total, "Recording schema version")
    return outcome


def _label(statement: str) -> str:
    """A short, content-free description of a DDL statement for progress display."""
    words = statement.split()
    if words[:2] == ["CREATE", "TABLE"]:
        return f"Creating table {words[2]}"
    if words[:2] in (["CREATE", "INDEX"], ["CREATE", "UNIQUE"]):
        return "Creating indexes"
    if words[:2] == ["CREATE", "EXTENSION"]:
        return "Enabling pgvector"
    if words[:2] == ["CREATE", "SCHEMA"]:
        return "Creating schema byodb"
    return "Applying schema change"

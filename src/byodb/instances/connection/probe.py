"""The connection test's pieces: classify a failed connection, preflight what deploy needs.

Every failure becomes one of the codes of DESIGN.md §5 with a plain sentence and a fix hint
(Metabase-style sentences, Airbyte-style codes). The preflight creates what deploy would
create inside a transaction that is always rolled back, so testing changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
from psycopg import errors as pgerrors

from byodb.content.deploy import SchemaConflict, deployed_schema, ensure_pgvector
from byodb.content.tables import CONTENT_SCHEMA
from byodb.instances.connection.failures import (
    fail,
    read_only,
    unsupported_encoding,
)

MIN_SERVER_VERSION = 140000


@dataclass(frozen=True)
class ConnectionVerdict:
    ok: bool
    code: str
    message: str
    hint: str | None = None
    server_version: str | None = None
    deployed_version: int | None = None
    # Which byodb database this is (byodb_meta), to tell a switch from new credentials.
    instance_id: uuid.UUID | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "server_version": self.server_version,
            "deployed_version": self.deployed_version,
        }


async def preflight(conn: psycopg.AsyncConnection, *, latest_version: int) -> ConnectionVerdict:
    """Server version, encoding, writability, pgvector, schema ownership and privileges —
    in one transaction that is always rolled back, so testing changes nothing."""
    async with conn.transaction(force_rollback=True):
        cur = await conn.execute(
            "select pg_catalog.current_setting('server_version_num')::int, "
            "pg_catalog.current_setting('server_version'), "
            "pg_catalog.current_setting('server_encoding'), "
            "pg_catalog.pg_is_in_recovery(), "
            "pg_catalog.current_setting('transaction_read_only')")
        row = await cur.fetchone()
        assert row is not None
        version_num, version_text = int(row[0]), str(row[1])[:40]
        encoding, in_recovery, read_only_tx = str(row[2]), row[3] is True, row[4] == "on"
        if version_num < MIN_SERVER_VERSION:
            raise fail("unsupported_version",
                        f"PostgreSQL {version_text} is too old; byodb needs 14 or newer.",
                        "Upgrade the server or create a new database on a current version.")
        if in_recovery or read_only_tx:
            raise read_only()
        if encoding.upper() not in ("UTF8", "UTF-8"):
            raise unsupported_encoding(encoding)
        try:
            schema = await deployed_schema(conn)
        except SchemaConflict as exc:
            raise fail("schema_conflict", exc.message, exc.hint or "") from None
        deployed = schema.version if schema is not None else None
        if deployed is not None and deployed > latest_version:
            raise fail("unsupported_version",
                        f"This database holds byodb schema version {deployed}, newer than "
                        f"this server knows ({latest_version}).",
                        "Connect it to an up-to-date byodb server.")
        if not await _may_create_anything(conn):
            raise read_only()
        try:
            async with conn.transaction():
                await ensure_pgvector(conn)
        except pgerrors.InsufficientPrivilege:
            raise fail("pgvector_missing",
                        "The pgvector extension is not enabled and this user may not enable it.",
                        "Enable it as an administrator: on Supabase, Database → Extensions → "
                        "vector; on Neon, RDS or your own server, CREATE EXTENSION vector; as "
                        "the owner or administrator.") from None
        except (pgerrors.UndefinedFile, pgerrors.FeatureNotSupported):
            raise fail("pgvector_missing",
                        "The pgvector extension is not available on this server.",
                        "Choose a provider or server with pgvector (Neon, Supabase and RDS "
                        "have it), or install pgvector on your server.") from None
        try:
            async with conn.transaction():
                await conn.execute(f"create schema if not exists {CONTENT_SCHEMA}")
                await conn.execute(f"create table {CONTENT_SCHEMA}.byodb_preflight (id int)")
                await conn.execute(
                    f"create index on {CONTENT_SCHEMA}.byodb_preflight (id)"
                )
        except pgerrors.InsufficientPrivilege:
            raise fail("insufficient_privileges",
                        "This user may not create the 'byodb' schema and its tables.",
                        "Use the database owner, or GRANT CREATE ON DATABASE to this "
                        "user.") from None
        vector = await (await conn.execute(
            "select extversion::text from pg_catalog.pg_extension "
            "where extname operator(pg_catalog.=) 'vector'::pg_catalog.name")).fetchone()
    if deployed is not None:
        message = (f"Connected to PostgreSQL {version_text}. byodb schema version {deployed} "
                   "is already deployed here.")
    else:
        shown = str(vector[0])[:20] if vector else "?"
        message = (f"Connected to PostgreSQL {version_text} with pgvector {shown}. "
                   "Ready to deploy.")
    return ConnectionVerdict(True, "ok", message, None, version_text, deployed,
                             schema.instance_id if schema is not None else None)


async def _may_create_anything(conn: psycopg.AsyncConnection) -> bool:
    """Whether the role may create anything here: a schema, or objects in the content
    schema or in ``public``. A role that may do none of it can only read (or less)."""
    cur = await conn.execute(
        "select pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') "
        "or coalesce(pg_catalog.has_schema_privilege("
        "pg_catalog.to_regnamespace(%s)::pg_catalog.oid, 'CREATE'), false) "
        "or coalesce(pg_catalog.has_schema_privilege("
        "pg_catalog.to_regnamespace('public')::pg_catalog.oid, 'CREATE'), false)",
        (CONTENT_SCHEMA,))
    row = await cur.fetchone()
    return row is not None and row[0] is True

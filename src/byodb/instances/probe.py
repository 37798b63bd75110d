"""The connection test's pieces: classify a failed connection, preflight what deploy needs.

Every failure becomes one of the codes of DESIGN.md §5 with a plain sentence and a fix hint
(Metabase-style sentences, Airbyte-style codes). The preflight creates what deploy would
create inside a transaction that is always rolled back, so testing changes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import errors as pgerrors

from byodb.content.deploy import SchemaConflict, deployed_schema
from byodb.content.tables import CONTENT_SCHEMA
from byodb.instances.guard import CheckedTarget, ConnectionCheckError

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


def _fail(code: str, message: str, hint: str) -> ConnectionCheckError:
    return ConnectionCheckError(message, hint=hint, code=code)


def classify_connect_error(exc: BaseException, target: CheckedTarget) -> ConnectionCheckError:
    """Map a failed connection attempt to a code, a sentence and a hint."""
    if isinstance(exc, ConnectionCheckError):
        return exc
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return _fail("timeout", "The database did not answer in time.",
                     "Check that the server is running and not paused, then retry.")
    sqlstate = getattr(exc, "sqlstate", None)
    text = str(exc).lower()
    if sqlstate in ("28P01", "28000") or "password authentication failed" in text:
        if "no pg_hba.conf entry" in text:
            return _fail("auth_failed", "The database refused connections from this server.",
                         "Allow this server's address in your database's access settings.")
        return _fail("auth_failed", "The user name or password was not accepted.",
                     "Copy the password again or reset it at your provider.")
    if sqlstate == "3D000" or ("database" in text and "does not exist" in text):
        return _fail("database_missing", f"The database {target.url.database!r} does not exist.",
                     "Create it first, or fix the database name at the end of the URL.")
    if "ssl" in text or "tls" in text or "certificate" in text:
        return _fail("tls_failed", "A secure (TLS) connection could not be set up.",
                     "Check that the server supports TLS and that sslmode matches it.")
    if "timeout" in text or "timed out" in text:
        return _fail("timeout", "The database did not answer in time.",
                     "Check that the server is running and not paused, then retry.")
    if "role" in text and "does not exist" in text:
        return _fail("auth_failed", "The user name or password was not accepted.",
                     "Check the user name in the URL.")
    return _fail("unreachable", "The database server could not be reached.",
                 "Check the host and port, and that the server accepts outside connections.")


async def preflight(conn: psycopg.AsyncConnection, *, latest_version: int) -> ConnectionVerdict:
    """Server version, pgvector, schema ownership and privileges — changes nothing."""
    version_num = int((await (await conn.execute("show server_version_num")).fetchone() or [0])[0])
    version_text = str((await (await conn.execute("show server_version")).fetchone() or [""])[0])
    if version_num < MIN_SERVER_VERSION:
        raise _fail("unsupported_version",
                    f"PostgreSQL {version_text} is too old; byodb needs 14 or newer.",
                    "Upgrade the server or create a new database on a current version.")
    try:
        schema = await deployed_schema(conn)
    except SchemaConflict as exc:
        raise _fail("schema_conflict", exc.message, exc.hint or "") from None
    deployed = schema.version if schema is not None else None
    if deployed is not None and deployed > latest_version:
        raise _fail("unsupported_version",
                    f"This database holds byodb schema version {deployed}, newer than this "
                    f"server knows ({latest_version}).",
                    "Connect it to an up-to-date byodb server.")
    async with conn.transaction(force_rollback=True):
        try:
            async with conn.transaction():
                await conn.execute("create extension if not exists vector")
        except pgerrors.InsufficientPrivilege:
            raise _fail("pgvector_missing",
                        "The pgvector extension is not enabled and this user may not enable it.",
                        "Run CREATE EXTENSION vector; as an administrator, or enable pgvector "
                        "in your provider's dashboard.") from None
        except (pgerrors.UndefinedFile, pgerrors.FeatureNotSupported):
            raise _fail("pgvector_missing",
                        "The pgvector extension is not available on this server.",
                        "Choose a provider or server with pgvector (Neon, Supabase and RDS "
                        "have it).") from None
        try:
            async with conn.transaction():
                await conn.execute(f"create schema if not exists {CONTENT_SCHEMA}")
                await conn.execute(f"create table {CONTENT_SCHEMA}.byodb_preflight (id int)")
                await conn.execute(
                    f"create index on {CONTENT_SCHEMA}.byodb_preflight (id)"
                )
        except pgerrors.InsufficientPrivilege:
            raise _fail("insufficient_privileges",
                        "This user may not create the 'byodb' schema and its tables.",
                        "Use the database owner, or GRANT CREATE ON DATABASE to this "
                        "user.") from None
    vector = await (await conn.execute(
        "select coalesce((select extversion from pg_extension where extname = 'vector'), "
        "(select default_version from pg_available_extensions where name = 'vector'))"
    )).fetchone()
    if deployed is not None:
        message = (f"Connected to PostgreSQL {version_text}. byodb schema version {deployed} "
                   "is already deployed here.")
    else:
        message = (f"Connected to PostgreSQL {version_text} with pgvector "
                   f"{vector[0] if vector else '?'}. Ready to deploy.")
    return ConnectionVerdict(True, "ok", message, None, version_text, deployed,
                             schema.instance_id if schema is not None else None)

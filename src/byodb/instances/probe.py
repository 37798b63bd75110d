"""The connection test: guard, connect, then preflight what deploy will need.

Every failure becomes one of the codes of DESIGN.md §5 with a plain sentence and a fix hint
(Metabase-style sentences, Airbyte-style codes). The preflight creates what deploy would
create inside a transaction that is always rolled back, so testing changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psycopg
from psycopg import errors as pgerrors

from byodb.instances.guard import CheckedTarget, ConnectionCheckError, Resolver, check_url
from byodb.instances.guard import system_resolver as _system_resolver

MIN_SERVER_VERSION = 140000
CONTENT_SCHEMA = "byodb"


@dataclass(frozen=True)
class ConnectionVerdict:
    ok: bool
    code: str
    message: str
    hint: str | None = None
    server_version: str | None = None
    deployed_version: int | None = None

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


async def open_connection(target: CheckedTarget, *, timeout_s: float) -> psycopg.AsyncConnection:
    """Connect to a checked target, classifying any failure."""
    try:
        return await asyncio.wait_for(
            psycopg.AsyncConnection.connect(**target.connect_kwargs(), autocommit=True),
            timeout_s,
        )
    except (psycopg.Error, OSError, TimeoutError) as exc:
        raise classify_connect_error(exc, target) from None


async def read_deployed_version(conn: psycopg.AsyncConnection) -> int | str | None:
    """The version in ``byodb.byodb_meta``; None when no byodb schema (or an empty one);
    ``"conflict"`` when a byodb schema holds something that is not ours."""
    row = await (await conn.execute(
        "select count(c.oid) from pg_namespace n left join pg_class c on c.relnamespace = n.oid "
        "where n.nspname = %s group by n.oid", (CONTENT_SCHEMA,)
    )).fetchone()
    if row is None or row[0] == 0:
        return None
    has_meta = await (await conn.execute(
        "select to_regclass('byodb.byodb_meta') is not null"
    )).fetchone()
    if not has_meta or not has_meta[0]:
        return "conflict"
    try:
        version = await (await conn.execute(
            "select schema_version from byodb.byodb_meta where id = 1"
        )).fetchone()
    except psycopg.Error:
        return "conflict"
    return int(version[0]) if version else "conflict"


async def preflight(conn: psycopg.AsyncConnection, *, latest_version: int) -> ConnectionVerdict:
    """Server version, pgvector, schema ownership and privileges — changes nothing."""
    version_num = int((await (await conn.execute("show server_version_num")).fetchone() or [0])[0])
    version_text = str((await (await conn.execute("show server_version")).fetchone() or [""])[0])
    if version_num < MIN_SERVER_VERSION:
        raise _fail("unsupported_version",
                    f"PostgreSQL {version_text} is too old; byodb needs 14 or newer.",
                    "Upgrade the server or create a new database on a current version.")
    deployed = await read_deployed_version(conn)
    if deployed == "conflict":
        raise _fail("schema_conflict",
                    "This database already has a 'byodb' schema that byodb did not create.",
                    "Use a dedicated database, or rename or drop the existing 'byodb' schema.")
    if isinstance(deployed, int) and deployed > latest_version:
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
    if isinstance(deployed, int):
        message = (f"Connected to PostgreSQL {version_text}. byodb schema version {deployed} "
                   "is already deployed here.")
    else:
        message = (f"Connected to PostgreSQL {version_text} with pgvector "
                   f"{vector[0] if vector else '?'}. Ready to deploy.")
    return ConnectionVerdict(True, "ok", message, None, version_text,
                      deployed if isinstance(deployed, int) else None)


async def run_connection_test(
    raw_url: str,
    *,
    allow_private: bool,
    tls_required: bool,
    latest_version: int,
    connect_timeout_s: float = 5.0,
    total_timeout_s: float = 15.0,
    resolver: Resolver = _system_resolver,
) -> ConnectionVerdict:
    """Test a URL end to end. Never raises for a bad URL or database: returns the verdict."""
    try:
        target = await check_url(raw_url, allow_private=allow_private, tls_required=tls_required,
                                 resolver=resolver, connect_timeout_s=connect_timeout_s)
    except ConnectionCheckError as exc:
        return ConnectionVerdict(False, exc.code, exc.message, exc.hint)

    async def run() -> ConnectionVerdict:
        conn = await open_connection(target, timeout_s=total_timeout_s)
        async with conn:
            return await preflight(conn, latest_version=latest_version)

    try:
        return await asyncio.wait_for(run(), total_timeout_s)
    except ConnectionCheckError as exc:
        return ConnectionVerdict(False, exc.code, exc.message, exc.hint)
    except TimeoutError:
        return ConnectionVerdict(False, "timeout", "The database did not answer in time.",
                          "Check that the server is running and not paused, then retry.")
    except (psycopg.Error, OSError) as exc:
        failure = classify_connect_error(exc, target)
        return ConnectionVerdict(False, failure.code, failure.message, failure.hint)

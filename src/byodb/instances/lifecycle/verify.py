"""The lifecycle's two looks at a database: the connection test of a URL (changes nothing)
and the check of the saved database (moves the user to ``connected`` or ``error``)."""

from __future__ import annotations

import asyncio

import psycopg

from byodb.content import latest_schema_version
from byodb.errors import ByodbError
from byodb.instances.connection.deadlines import Deadline
from byodb.instances.connection.failures import classify
from byodb.instances.connection.guard import ConnectionCheckError
from byodb.instances.connection.handle import UserDatabase
from byodb.instances.connection.probe import ConnectionVerdict, preflight
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.config_store import DatabaseConfig
from byodb.instances.lifecycle.databases import UserDatabases
from byodb.instances.lifecycle.states import ConnectionStatus
from byodb.instances.lifecycle.step_failures import public_error


async def connection_test(database: UserDatabase, *, timeout_s: float) -> ConnectionVerdict:
    """Test ``database`` end to end within ``timeout_s``: the guard, a connection, the
    preflight of what deploy needs. Changes nothing; never raises for a bad database."""
    try:
        target = await database.target()
    except ConnectionCheckError as exc:
        return ConnectionVerdict(False, exc.code, exc.message, exc.hint)
    try:
        async with asyncio.timeout(timeout_s):
            async with database.connection(Deadline(timeout_s)) as conn:
                return await preflight(conn, latest_version=latest_schema_version())
    except ConnectionCheckError as exc:
        return ConnectionVerdict(False, exc.code, exc.message, exc.hint)
    except (TimeoutError, psycopg.Error, OSError) as exc:
        failure = classify(exc, target.url)
        return ConnectionVerdict(False, failure.code, failure.message, failure.hint)


async def check_saved(config: DatabaseConfig, *, databases: UserDatabases,
                      changes: StateChanges, timeout_s: float) -> DatabaseConfig | None:
    """Check the saved database now: reachable with our schema → ``connected``, else
    ``error`` with the reason."""
    user_id = config.user_id
    try:
        database = databases.of(config)
        async with asyncio.timeout(timeout_s):
            schema = await database.deployed_schema()
        if schema is None or schema.version != config.schema_version or \
                schema.instance_id != config.instance_id:
            raise ConnectionCheckError(
                "The byodb schema on your database is missing or is not the one "
                "deployed for you.", hint="Redeploy from Settings → Database.",
                code="schema_conflict")
    except (ByodbError, TimeoutError, psycopg.Error, OSError) as exc:  # incl. guard, vault
        message, code = public_error(exc, stage="The check")
        return await changes.update(
            user_id, connection=ConnectionStatus.error,
            expect_credential_version=config.credential_version,
            connection_error=message, connection_error_code=code,
            last_connection_test=changes.now(),
            consecutive_failures=config.consecutive_failures + 1)
    return await changes.update(
        user_id, connection=ConnectionStatus.connected,
        expect_credential_version=config.credential_version, connection_error=None,
        connection_error_code=None, consecutive_failures=0,
        last_connection_test=changes.now())

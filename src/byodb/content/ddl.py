"""The full DDL of the current content schema version, as SQL text and as execution.

One source of truth: ``content_schema_statements()`` are the statements that an automatic
deploy runs (``byodb.content.deploy``), ``content_schema_sql()`` is the same statements as
the script shipped in the manual-deploy package (run by the user with psql), and
``create_content_schema()`` runs them over a sync connection (the schema tests use it).

The script is deliberately *not* re-runnable: tables and indexes are created without
IF NOT EXISTS, so running it on a database that already has (part of) the schema fails
instead of silently leaving a mixed state. Deploy reads ``byodb.byodb_meta`` first to
decide between "create", "already deployed" and "migrate with steps".
"""

from __future__ import annotations

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import Compiled
from sqlalchemy.schema import CreateIndex, CreateTable

from byodb.content.tables import CONTENT_SCHEMA, byodb_meta, metadata


def _postgresql_dialect() -> Dialect:
    # The driver-less PostgreSQL dialect: the script must not depend on psycopg.
    return PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves __init__ untyped


def _sorted_tables() -> list[Table]:
    """Every table in foreign-key dependency order (parents before children)."""
    return list(metadata.sorted_tables)


def content_schema_statements(dialect: Dialect | None = None) -> list[str]:
    """The statements of ``content_schema_sql``, one string each, without trailing ``;``.

    Order: the pgvector extension, the schema, then for each table (dependency order) its
    CREATE TABLE followed by its indexes sorted by name. Sorting matters because
    ``Table.indexes`` is a set, whose order may differ between processes.
    """
    dialect = dialect or _postgresql_dialect()
    statements = [
        # pgvector must exist before any vector(1536) column; IF NOT EXISTS because the
        # extension is database-wide and may already be installed for other uses.
        "CREATE EXTENSION IF NOT EXISTS vector",
        # The user may have created the empty schema themselves (e.g. to grant on it).
        f"CREATE SCHEMA IF NOT EXISTS {CONTENT_SCHEMA}",
    ]
    for table in _sorted_tables():
        statements.append(_tidy(CreateTable(table).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            statements.append(_tidy(CreateIndex(index).compile(dialect=dialect)))
    return statements


def _tidy(compiled: Compiled) -> str:
    """Compiled DDL without SQLAlchemy's trailing blanks (the script is read by people)."""
    return "\n".join(line.rstrip() for line in str(compiled).strip().splitlines())


def content_schema_sql(dialect: Dialect | None = None) -> str:
    """The whole DDL of the current version as one SQL script (PostgreSQL by default).

    Deterministic: the same code always yields the same text, so it can be exported,
    diffed and checksummed. It does not insert the ``byodb_meta`` row (see
    ``meta_insert_sql``), because each deploy needs its own ``instance_id``.
    """
    return "".join(f"{statement};\n\n" for statement in content_schema_statements(dialect))


def meta_insert_sql(version: int) -> str:
    """The statement that records ``version`` in a freshly created schema.

    For the manual-deploy package: the instance id comes from ``gen_random_uuid()``
    (built into PostgreSQL 13+), so every database that runs the script gets its own.
    """
    # bool is an int subclass; True must not become "version 1".
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"schema version must be a positive integer, got {version!r}")
    return (
        f"INSERT INTO {CONTENT_SCHEMA}.{byodb_meta.name} (id, schema_version, instance_id) "
        f"VALUES (1, {version}, gen_random_uuid());\n"
    )


def create_content_schema(connection: Connection) -> None:
    """Create the current schema version over ``connection``, statement by statement.

    Runs exactly the statements of ``content_schema_sql()``, inside the caller's
    transaction: the caller commits (and writes ``byodb_meta``) or rolls back, so a
    deploy that dies leaves the database as it was.
    """
    if connection.dialect.name != "postgresql":
        raise ValueError(f"the content schema needs PostgreSQL, not {connection.dialect.name!r}")
    # Compiled for the generic PostgreSQL dialect, not the connection's driver, so that
    # the statements are byte for byte those of the exported script.
    for statement in content_schema_statements():
        # exec_driver_sql: the DDL is final text; no bind-parameter parsing wanted.
        connection.exec_driver_sql(statement)


def content_table_names() -> list[str]:
    """Names of the content tables in dependency order (without ``byodb_meta``)."""
    return [table.name for table in _sorted_tables() if table is not byodb_meta]

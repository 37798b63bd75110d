"""The full DDL of a content schema version, as SQL text and as execution.

One source of truth: ``content_schema_statements()`` are the statements that an automatic
deploy runs (``byodb.content.deploy``), ``content_schema_sql()`` is the same statements as
the script shipped in the manual-deploy package (run by the user with psql), and
``create_content_schema()`` runs them over a sync connection (the schema tests use it).

Every supported version can be created, not only the latest (``BYODB_SCHEMA_TARGET`` may
hold a rollout at an older one): the latest comes from the table metadata, version 1 from
its frozen DDL (``frozen/v1.sql``, the metadata's script as released with version 1), and a
version in between from version 1 followed by the version steps up to it.

The script is deliberately *not* re-runnable: tables and indexes are created without
IF NOT EXISTS, so running it on a database that already has (part of) the schema fails
instead of silently leaving a mixed state. Deploy reads ``byodb.byodb_meta`` first to
decide between "create", "already deployed" and "migrate with steps".
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import Compiled
from sqlalchemy.schema import CreateIndex, CreateTable

from byodb.content.steps import steps_between
from byodb.content.tables import CONTENT_SCHEMA, byodb_meta, metadata
from byodb.content.version import CONTENT_SCHEMA_VERSION

_FROZEN_V1 = Path(__file__).parent / "frozen" / "v1.sql"
_SEPARATOR = ";\n\n"  # after every statement of a script (see content_schema_sql)


def _postgresql_dialect() -> Dialect:
    # The driver-less PostgreSQL dialect: the script must not depend on psycopg.
    return PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves __init__ untyped


def _sorted_tables() -> list[Table]:
    """Every table in foreign-key dependency order (parents before children)."""
    return list(metadata.sorted_tables)


def content_schema_statements(dialect: Dialect | None = None, *,
                              version: int | None = None) -> list[str]:
    """The statements of ``content_schema_sql``, one string each, without trailing ``;``.

    ``version`` (default: the latest) picks the version they create; an unknown one raises
    ``ValueError``. For the latest, order: the pgvector extension, the schema, then for
    each table (dependency order) its CREATE TABLE followed by its indexes sorted by name.
    Sorting matters because ``Table.indexes`` is a set, whose order may differ between
    processes.
    """
    if version is not None and version != CONTENT_SCHEMA_VERSION:
        return _older_version_statements(version)
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


def known_schema_versions() -> range:
    """Every version whose DDL this code can produce (1 .. latest)."""
    return range(1, CONTENT_SCHEMA_VERSION + 1)


def _older_version_statements(version: int) -> list[str]:
    if isinstance(version, bool) or not isinstance(version, int) or \
            version not in known_schema_versions():
        raise ValueError(f"unknown content schema version {version!r}: this release knows "
                         f"versions 1 to {CONTENT_SCHEMA_VERSION}")
    statements = list(_frozen_v1_statements())
    for _, step in steps_between(1, version):
        statements.extend(step)
    return statements


@cache
def _frozen_v1_statements() -> tuple[str, ...]:
    script = _FROZEN_V1.read_text(encoding="utf-8")
    if not script.endswith(_SEPARATOR):
        raise ValueError(f"{_FROZEN_V1.name} does not end with a complete statement")
    return tuple(script[: -len(_SEPARATOR)].split(_SEPARATOR))


def _tidy(compiled: Compiled) -> str:
    """Compiled DDL without SQLAlchemy's trailing blanks (the script is read by people)."""
    return "\n".join(line.rstrip() for line in str(compiled).strip().splitlines())


def content_schema_sql(dialect: Dialect | None = None, *, version: int | None = None) -> str:
    """The whole DDL of ``version`` (default: the latest) as one SQL script (PostgreSQL by
    default); for version 1 it is the frozen file, byte for byte.

    Deterministic: the same code always yields the same text, so it can be exported,
    diffed and checksummed. It does not insert the ``byodb_meta`` row (see
    ``meta_insert_sql``), because each deploy needs its own ``instance_id``. An unknown
    ``version`` raises ``ValueError``.
    """
    statements = content_schema_statements(dialect, version=version)
    return "".join(f"{statement}{_SEPARATOR}" for statement in statements)


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


def create_content_schema(connection: Connection, *, version: int | None = None) -> None:
    """Create schema ``version`` (default: the latest) over ``connection``, statement by
    statement.

    Runs exactly the statements of ``content_schema_sql()``, inside the caller's
    transaction: the caller commits (and writes ``byodb_meta``) or rolls back, so a
    deploy that dies leaves the database as it was.
    """
    if connection.dialect.name != "postgresql":
        raise ValueError(f"the content schema needs PostgreSQL, not {connection.dialect.name!r}")
    # Compiled for the generic PostgreSQL dialect, not the connection's driver, so that
    # the statements are byte for byte those of the exported script.
    for statement in content_schema_statements(version=version):
        # exec_driver_sql: the DDL is final text; no bind-parameter parsing wanted.
        connection.exec_driver_sql(statement)


def content_table_names() -> list[str]:
    """Names of the content tables in dependency order (without ``byodb_meta``)."""
    return [table.name for table in _sorted_tables() if table is not byodb_meta]

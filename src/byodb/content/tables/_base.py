"""Shared pieces of the content schema: the MetaData, naming rules and column helpers.

Every content table module builds its tables from these helpers so that the schema's
rules (see docs/content-schema.md) are written down once: UUID primary keys without a
server default, a mandatory ``user_id``, ``timestamptz`` times, ``text`` + CHECK enums.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

CONTENT_SCHEMA = "byodb"
"""The PostgreSQL schema that holds every content table, on main and on user databases."""

EMBEDDING_DIMENSIONS = 1536
"""Width of every embedding column (the seeds' vector indexes use 1536)."""

# Stable names for everything the database names for us. Version steps are frozen SQL
# that refers to constraints and indexes by name, so a name must never depend on
# SQLAlchemy's defaults. Indexes always get an explicit name in the table modules; the
# "ix" entry only guards against one being forgotten.
NAMING_CONVENTION: dict[str, str] = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
}

metadata = MetaData(schema=CONTENT_SCHEMA, naming_convention=NAMING_CONVENTION)
"""The one MetaData holding all content tables and ``byodb_meta``."""


def id_column() -> Column[uuid.UUID]:
    """Primary key ``id uuid``.

    No server default: ids are UUID v7 made by the application, because user databases
    may run PostgreSQL 14..17 which lack ``uuidv7()``, and rows keep their ids when they
    move between databases.
    """
    return Column("id", Uuid(as_uuid=True), primary_key=True)


def user_id_column() -> Column[str]:
    """``user_id text not null``: the auth subject that owns the row (tenant scope)."""
    return Column("user_id", Text, nullable=False)


def created_at_column() -> Column[datetime]:
    """``created_at timestamptz not null default now()``."""
    return timestamp_column("created_at")


def updated_at_column() -> Column[datetime]:
    """``updated_at timestamptz not null default now()`` (the application bumps it)."""
    return timestamp_column("updated_at")


def timestamp_column(name: str, *, default_now: bool = True) -> Column[datetime]:
    """A required ``timestamptz``, by default defaulting to the time of the insert.

    ``default_now=False`` for times that only the application can know (an expiry).
    """
    return Column(
        name,
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now() if default_now else None,
    )


def optional_timestamp_column(name: str) -> Column[datetime]:
    """A nullable ``timestamptz`` (the seeds' optional epoch-millisecond numbers)."""
    return Column(name, DateTime(timezone=True), nullable=True)


def flag_column(name: str, *, default: bool = False) -> Column[bool]:
    """``boolean not null`` with a server default, so a missing flag is never NULL."""
    return Column(
        name,
        Boolean,
        nullable=False,
        server_default=text("true") if default else false(),
    )


def counter_column(name: str, type_: type[Integer] = Integer) -> Column[int]:
    """A counter: ``not null default 0``."""
    return Column(name, type_, nullable=False, server_default=text("0"))


def fk_column(
    name: str,
    target_table: str,
    *,
    ondelete: str,
    nullable: bool = False,
) -> Column[uuid.UUID]:
    """A ``uuid`` column referencing ``byodb.<target_table>.id``.

    References are by string so that table modules need not import each other in a
    particular order; ``metadata.sorted_tables`` resolves them once all are loaded.
    """
    return Column(
        name,
        Uuid(as_uuid=True),
        ForeignKey(f"{CONTENT_SCHEMA}.{target_table}.id", ondelete=ondelete),
        nullable=nullable,
    )


def embedding_column() -> Column[Any]:
    """``embedding vector(1536)``, nullable: rows exist before their embedding is computed."""
    return Column("embedding", Vector(EMBEDDING_DIMENSIONS), nullable=True)


def embedding_model_column() -> Column[str]:
    """``embedding_model text``, nullable (schema version 2): the name of the model that made
    the row's ``embedding``, so vectors of an old model can be found and recomputed. NULL
    for rows without an embedding and for vectors written before version 2.

    Declared last in its table: a version step adds it with ``ALTER TABLE ... ADD COLUMN``,
    which appends, and a fresh deploy must give the same column order.
    """
    return Column("embedding_model", Text, nullable=True)


def tsvector_column(name: str, *source_columns: str) -> Column[Any]:
    """A generated, stored ``tsvector`` over one or more text columns (English config).

    Several source columns are joined with a space so words at the seam stay apart.
    ``to_tsvector`` with a constant configuration is immutable, as generated columns need.
    """
    document = " || ' ' || ".join(f"coalesce({column}, '')" for column in source_columns)
    return Column(
        name,
        TSVECTOR,
        Computed(f"to_tsvector('english', {document})", persisted=True),
    )


def enum_check(column: str, values: Sequence[str], *, name: str | None = None) -> CheckConstraint:
    """A named CHECK that ``column`` holds one of ``values`` (NULL passes, as in SQL).

    Enums are ``text`` + CHECK rather than PostgreSQL enum types, because changing a
    CHECK is a plain transactional statement in a version step while ``ALTER TYPE ... ADD
    VALUE`` has transaction restrictions. The constraint is named
    ``ck_<table>_<name or column>`` by the naming convention.
    """
    if not values:
        raise ValueError("an enum needs at least one value")
    allowed = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or column)


def hnsw_cosine_index(table_name: str) -> Index:
    """The HNSW cosine-distance index on a table's ``embedding`` column.

    m=16 / ef_construction=64 are pgvector's defaults, written out so the frozen DDL
    does not change if a future pgvector changes its defaults.
    """
    return Index(
        f"ix_{table_name}_embedding",
        "embedding",
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )


def gin_index(name: str, column: str) -> Index:
    """A GIN index over a generated ``tsvector`` column (full-text search)."""
    return Index(name, column, postgresql_using="gin")

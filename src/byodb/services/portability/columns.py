"""The columns an export writes and an import reads, per content table, with their bounds.

Which columns: those the code knows (the latest table metadata) *and* the database has
(reflected from its catalog), so one export reader serves every supported schema version
and columns someone added by hand are never read. How each is bounded is the API's rule
(``byodb.content.limits``), as for every read of a user's database (``services.rows``).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Table,
    Uuid,
)

from byodb.content import CONTENT_SCHEMA, content_table_names
from byodb.content.limits import (
    MAX_INLINE_BYTES,
    MAX_JSON_BYTES,
    STORED_FIELD_LIMITS,
    text_limit,
)
from byodb.content.tables import EMBEDDING_DIMENSIONS, metadata

Kind = Literal["uuid", "text", "json", "bytes", "member", "vector", "time", "date",
               "integer", "numeric", "float", "boolean"]

MEMBER_COLUMNS: frozenset[tuple[str, str]] = frozenset({("files", "content")})
"""Bytes that go into a member of their own (``files/…``) instead of into the row."""

VECTOR_CHARS = EMBEDDING_DIMENSIONS * 16 + 2
"""Longest text of a vector of the schema's width (a float is at most 15 characters)."""

NUMERIC_CHARS = 64
"""Longest ``numeric`` (a cost) as text: a value the app writes has a handful of digits."""

_INTEGER_RANGES: dict[type[Any], int] = {SmallInteger: 2**15, BigInteger: 2**63, Integer: 2**31}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: Kind
    limit: int
    """Characters (text, vector, numeric), bytes (json, bytes, member), the magnitude an
    integer stays below, or 0 (fixed-size values)."""
    nullable: bool


def _spec(table: Table, name: str) -> ColumnSpec:
    column = table.c[name]
    type_ = column.type
    where = (table.name, name)
    kind: Kind
    limit = 0
    if isinstance(type_, Uuid):
        kind = "uuid"
    elif isinstance(type_, JSON):
        kind, limit = "json", STORED_FIELD_LIMITS.get(where, MAX_JSON_BYTES)
    elif isinstance(type_, LargeBinary):
        kind = "member" if where in MEMBER_COLUMNS else "bytes"
        limit = STORED_FIELD_LIMITS.get(where, MAX_INLINE_BYTES)
    elif isinstance(type_, String):
        kind, limit = "text", STORED_FIELD_LIMITS.get(where, text_limit(name))
    elif isinstance(type_, Vector):
        kind, limit = "vector", VECTOR_CHARS
    elif isinstance(type_, DateTime):
        kind = "time"
    elif isinstance(type_, Date):
        kind = "date"
    elif isinstance(type_, Boolean):
        kind = "boolean"
    elif isinstance(type_, Double):
        kind = "float"
    elif isinstance(type_, Numeric):
        kind, limit = "numeric", NUMERIC_CHARS
    elif isinstance(type_, Integer):
        kind = "integer"
        limit = next(r for t, r in _INTEGER_RANGES.items() if isinstance(type_, t))
    else:  # a new column type must be given its rule here before it can be exported
        raise TypeError(f"{table.name}.{name}: no export rule for {type_!r}")
    return ColumnSpec(name, kind, limit, bool(column.nullable))


def content_tables() -> list[Table]:
    """Every content table, parents before children (``byodb_meta`` is not content)."""
    return [metadata.tables[f"{CONTENT_SCHEMA}.{name}"] for name in content_table_names()]


def stored_specs(table: Table, present: Collection[str]) -> list[ColumnSpec]:
    """The table's stored columns (generated ones are the database's to compute) that the
    database has, in the metadata's order."""
    return [_spec(table, c.name) for c in table.columns
            if c.computed is None and c.name in present]


def table_specs(table_name: str) -> list[ColumnSpec]:
    """Every stored column of the content table the code knows, in the metadata's order."""
    table = metadata.tables[f"{CONTENT_SCHEMA}.{table_name}"]
    return stored_specs(table, {c.name for c in table.columns})


def json_chars(spec: ColumnSpec) -> int:
    """Most characters the column's value takes in a JSON row (name, quotes and escapes)."""
    name = len(spec.name) + 6
    if spec.kind == "text":
        return name + 6 * spec.limit + 2  # \u0001 is six characters
    if spec.kind == "json":
        return name + spec.limit
    if spec.kind in ("bytes", "member"):
        return name + 4 * math.ceil(spec.limit / 3) + 2
    if spec.kind in ("vector", "numeric"):
        return name + spec.limit
    return name + 64  # ids, times, numbers, flags


async def present_columns(conn: psycopg.AsyncConnection[Any]) -> dict[str, set[str]]:
    """Table → the columns it has in the database's ``byodb`` schema (only names are taken
    from the database; what they are is the code's metadata)."""
    cursor = await conn.execute(
        "select c.relname::text, a.attname::text from pg_catalog.pg_attribute a "
        "join pg_catalog.pg_class c on c.oid = a.attrelid "
        "join pg_catalog.pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = %s and c.relkind in ('r', 'p') and a.attnum > 0 "
        "and not a.attisdropped and c.relname = any(%s)",
        (CONTENT_SCHEMA, list(content_table_names())))
    present: dict[str, set[str]] = {}
    for table, column in await cursor.fetchall():
        present.setdefault(table, set()).add(column)
    return present

"""How a data move sees the content tables: each table's plan (stored columns, references,
natural keys, the API's value limits as SQL checks), the move's errors and report, and the
small SQL helpers the move's steps share. The order of a move is told in
:mod:`byodb.instances.lifecycle.moves`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, sql
from sqlalchemy import Integer, LargeBinary, Numeric, String, Table, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB

from byodb.content import CONTENT_SCHEMA, CONTENT_SCHEMA_VERSION, content_table_names, has_column
from byodb.content.deploy import deployed_schema
from byodb.content.limits import (
    HASH_PATTERN,
    MAX_INLINE_BYTES,
    MAX_JSON_BYTES,
    STORED_FIELD_LIMITS,
    text_limit,
)
from byodb.content.tables import metadata
from byodb.errors import ByodbError

Progress = Callable[[str], Awaitable[None]]
Conn = AsyncConnection[Any]

_SESSION = ("set local timezone = 'UTC'", "set local datestyle = 'ISO, MDY'",
            "set local extra_float_digits = 3", "set local intervalstyle = 'postgres'")

# Text the API also checks against a pattern (a TTS hash appears in URLs).
_PATTERNS: dict[tuple[str, str], str] = {("tts_cache", "hash"): HASH_PATTERN}

# Natural keys the services enforce in code (schema v1 has no unique index for them; v2
# has, but a version-1 source may still hold duplicates, which merge into one row here).
_CODE_ENFORCED_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "tags": (("user_id", "name"),),
    "tts_cache": (("user_id", "hash"),),
}
# Key columns compared ignoring case, as the services compare them (and as schema version
# 2's unique index on lower(name) does: "Work" and "work" are one tag).
_CASE_FOLDED_KEYS: frozenset[tuple[str, str]] = frozenset({("tags", "name")})
# Tables whose natural-key duplicates are added up instead of keeping the target's row.
_SUMMED_COLUMNS: dict[str, tuple[str, ...]] = {
    "usage_records": ("input_tokens", "output_tokens", "cost", "request_count"),
}

# Bookkeeping column of every staging table: the id of the target row a staged row was
# merged into by natural key (NULL: the staged row stands for itself).
MERGED_INTO = "byodb_merged_into"
# Whether a row with the staged row's id was on the target before the insert.
WAS_ON_TARGET = "byodb_was_on_target"


_HINTS: dict[str, str] = {
    "move_foreign_rows": "The byodb schema of the database being moved from holds rows of "
                         "other accounts; remove them, then try again.",
    "move_id_conflict": "Rows of the database being moved from reuse ids of other accounts' "
                        "rows; remove those rows, then try again.",
    "move_invalid_content": "Correct or remove the rows named in the message in the database "
                            "being moved from, then try again.",
}


class MoveRefused(ByodbError):
    """A move that must not happen; nothing was changed on either side. ``code`` is one of
    ``move_foreign_rows``, ``move_id_conflict`` or ``move_invalid_content``."""

    code = "move_refused"
    status = 409

    def __init__(self, message: str, *, code: str, hint: str | None = None) -> None:
        super().__init__(message, code=code, hint=hint or _HINTS.get(code))


class MoveVerificationError(ByodbError):
    code = "move_verification_failed"


@dataclass
class MoveReport:
    rows: dict[str, int] = field(default_factory=dict)
    """Rows read from the source, per table."""
    merged: int = 0
    """Of those, rows combined with a row already on the target (same id or natural key)."""

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


# --- the tables, as the move sees them --------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One value rule: ``condition`` (SQL over a staged row ``s``) is true for a bad value."""

    column: str
    condition: sql.Composable
    params: tuple[Any, ...]
    what: str


@dataclass(frozen=True)
class Plan:
    table: Table
    columns: tuple[str, ...]  # stored columns (generated ones are computed by the target)
    references: tuple[tuple[str, str], ...]  # (column, parent table) per foreign key
    keys: tuple[tuple[str, ...], ...]  # natural keys
    summed: tuple[str, ...]  # counters added up on a natural-key match
    checks: tuple[Check, ...]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def has_updated_at(self) -> bool:
        return "updated_at" in self.columns

    @property
    def real(self) -> sql.Identifier:
        return sql.Identifier(CONTENT_SCHEMA, self.name)

    @property
    def staging(self) -> sql.Identifier:
        return staging_name(self.name)


def content_tables() -> list[Table]:
    """Every content table, parents before children."""
    return [metadata.tables[f"{CONTENT_SCHEMA}.{name}"] for name in content_table_names()]


def staging_name(table_name: str) -> sql.Identifier:
    # Qualified with pg_temp so no schema on the search path can stand in for it.
    return sql.Identifier("pg_temp", f"byodb_move_{table_name}")


def stored_columns(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if c.computed is None)


def _natural_keys(table: Table) -> tuple[tuple[str, ...], ...]:
    declared = tuple(tuple(c.name for c in constraint.columns)
                     for constraint in table.constraints
                     if isinstance(constraint, UniqueConstraint))
    return declared + _CODE_ENFORCED_KEYS.get(table.name, ())


def _value_checks(table: Table, columns: Sequence[str]) -> tuple[Check, ...]:
    """The API's limits on each stored column, as SQL conditions that flag a bad value."""
    checks: list[Check] = []
    for name in columns:
        col = sql.Identifier("s", name)
        type_ = table.c[name].type
        where = (table.name, name)
        if isinstance(type_, String):
            limit = STORED_FIELD_LIMITS.get(where, text_limit(name))
            checks.append(Check(name, sql.SQL("char_length({}) > %s").format(col), (limit,),
                                 f"longer than {limit} characters"))
            if where in _PATTERNS:
                checks.append(Check(name, sql.SQL("{} !~ %s").format(col),
                                     (_PATTERNS[where],), "not in the allowed characters"))
        elif isinstance(type_, JSONB):
            limit = STORED_FIELD_LIMITS.get(where, MAX_JSON_BYTES)
            checks.append(Check(name, sql.SQL("octet_length({}::text) > %s").format(col),
                                 (limit,), f"larger than {limit} bytes"))
        elif isinstance(type_, LargeBinary):
            limit = STORED_FIELD_LIMITS.get(where, MAX_INLINE_BYTES)
            checks.append(Check(name, sql.SQL("octet_length({}) > %s").format(col), (limit,),
                                 f"larger than {limit} bytes"))
        elif isinstance(type_, Integer):  # BigInteger too
            checks.append(Check(name, sql.SQL("{} < 0").format(col), (), "negative"))
        elif isinstance(type_, Numeric):
            # NaN sorts above Infinity in PostgreSQL, so this refuses NaN and ±Infinity too.
            checks.append(Check(name, sql.SQL("not ({0} >= 0 and {0} < 'Infinity')").format(
                col), (), "negative or not a finite number"))
    return tuple(checks)


def plan_for(table: Table, version: int) -> Plan:
    # Only the columns both databases have: during a schema rollout one side may still be
    # at an older version (what it lacks is left to the target's default, NULL).
    columns = tuple(c for c in stored_columns(table) if has_column(version, table.name, c))
    references = tuple((fk.parent.name, fk.column.table.name) for fk in table.foreign_keys)
    return Plan(table=table, columns=columns, references=references,
                 keys=_natural_keys(table), summed=_SUMMED_COLUMNS.get(table.name, ()),
                 checks=_value_checks(table, columns))


def plans_for(version: int) -> list[Plan]:
    return [plan_for(table, version) for table in content_tables()]


async def common_version(source: Conn, target: Conn) -> int:
    """The older of the two databases' schema versions (the latest if neither says)."""
    versions = [schema.version for schema in
                (await deployed_schema(source), await deployed_schema(target)) if schema]
    return min(versions, default=CONTENT_SCHEMA_VERSION)


# --- small SQL helpers -------------------------------------------------------------------


def names(columns: Sequence[str], alias: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in columns)


def row_hash(columns: Sequence[str], alias: str) -> sql.Composable:
    """md5 of the row's text: the same under the comparable session settings on any server."""
    return sql.SQL("md5(row({})::text)").format(names(columns, alias))


def key_value(table: str, column: str, alias: str) -> sql.Composable:
    value = sql.Identifier(alias, column)
    return sql.SQL("lower({})").format(value) if (table, column) in _CASE_FOLDED_KEYS else value


def key_match(table: str, key: Sequence[str], left: str, right: str) -> sql.Composable:
    return sql.SQL(" and ").join(
        sql.SQL("{} = {}").format(key_value(table, c, left), key_value(table, c, right))
        for c in key)


async def scalar(conn: Conn, query: sql.Composed,
                 params: Sequence[Any] | dict[str, Any] = ()) -> Any:
    cursor = await conn.execute(query, params)
    row = await cursor.fetchone()
    return row[0] if row else None


async def count_of(conn: Conn, query: sql.Composed,
                 params: Sequence[Any] | dict[str, Any] = ()) -> int:
    return int(await scalar(conn, query, params) or 0)


async def rowcount_of(conn: Conn, query: sql.Composed,
                    params: Sequence[Any] | dict[str, Any] = ()) -> int:
    cursor = await conn.execute(query, params)
    return max(cursor.rowcount, 0)


async def set_comparable_session(conn: Conn) -> None:
    """Session settings under which row text is identical on any server (in a transaction)."""
    for statement in _SESSION:
        await conn.execute(statement)


async def say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        await progress(message)


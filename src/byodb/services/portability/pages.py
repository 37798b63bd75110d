"""How a user's rows are read for an export: each value bounded on the server.

Every variable-size value is replaced by NULL when it is over the API's limit and the
column named in a flag, so an over-limit value never crosses the wire; the reader then
refuses the row (:class:`~byodb.services.rows.InvalidStoredContent`, like every API read)
and checks each row's length against the most its columns can take
(:attr:`PageQuery.row_chars`), which holds even if the database lies. The values are sent
as text (``portability.jsonlines`` makes the JSON) or, for a few small members (notes'
Markdown, conversation heads), as JSON made by PostgreSQL; the rows are streamed by
``portability.copystream``, inside the caller's snapshot transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from byodb.services.portability.columns import ColumnSpec, json_chars

Conn = psycopg.AsyncConnection[Any]


def column(name: str) -> sql.Composable:
    return sql.Identifier("t", name)


def value_of(spec: ColumnSpec) -> sql.Composable:
    """The column's JSON value, NULL when it is over its limit (see :func:`over_of`)."""
    col = column(spec.name)
    over = over_of(spec)
    if spec.kind == "bytes":
        value: sql.Composable = sql.SQL(
            "pg_catalog.translate(pg_catalog.encode({}, 'base64'), E'\\n', '')").format(col)
    elif spec.kind == "member":
        value = sql.SQL("({} is not null)").format(col)  # the member's path is added here
    elif spec.kind == "vector":
        value = sql.SQL("{}::text::json").format(col)
    else:
        value = col
    if over is None:
        return value
    return sql.SQL("case when {} then null else {} end").format(over, value)


def over_of(spec: ColumnSpec) -> sql.Composable | None:
    """SQL that is true when the column's value is over the API's limit."""
    col = column(spec.name)
    limit = sql.Literal(spec.limit)
    if spec.kind == "text":
        return sql.SQL("pg_catalog.char_length({}) > {}").format(col, limit)
    if spec.kind == "json":
        return sql.SQL("pg_catalog.octet_length({}::text) > {}").format(col, limit)
    if spec.kind in ("bytes", "member"):
        return sql.SQL("pg_catalog.octet_length({}) > {}").format(col, limit)
    if spec.kind in ("vector", "numeric"):
        return sql.SQL("pg_catalog.char_length({}::text) > {}").format(col, limit)
    return None


@dataclass(frozen=True)
class PageQuery:
    """Rows of ``table`` (alias ``t``) for one user as JSON objects of ``fields``; ``overs``
    name the columns whose values can be over their limit, with the SQL that says so."""

    table: str
    fields: tuple[tuple[str, sql.Composable], ...]
    overs: tuple[tuple[str, sql.Composable], ...]
    row_chars: int
    """Most characters a row's text can have."""

    @staticmethod
    def of_columns(table: str, specs: Sequence[ColumnSpec]) -> PageQuery:
        overs = tuple((s.name, o) for s in specs if (o := over_of(s)) is not None)
        return PageQuery(table, tuple((s.name, value_of(s)) for s in specs), overs,
                         sum(json_chars(s) for s in specs) + 2)

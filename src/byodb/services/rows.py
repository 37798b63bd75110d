"""Turning content rows into plain JSON-able dicts (internal columns left out), reading no
more of a stored value than the API could ever have written.

A user's database is untrusted (DESIGN.md §6): its owner can store a 5 MB title or a 50 MB
message. So every column a response is built from is selected through :class:`Reader`,
which cuts variable-size values *on the server* to one unit more than their limit — text by
characters with ``left()``, JSON as its text form, bytes with ``substr()`` — so the wire
and this process never carry more than the bound. The row is then checked here: a value
over its limit cannot have come through the API, so the read fails with
:class:`InvalidStoredContent` (never shown cut, which would look like the real value and
could be saved back). Rows the API wrote always pass, and the cut costs no round trip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pgvector.sqlalchemy import Vector
from sqlalchemy import JSON, Column, LargeBinary, String, Table, Text, cast, func
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.sql.elements import ColumnElement

from byodb.content.limits import (
    MAX_INLINE_BYTES,
    MAX_JSON_BYTES,
    STORED_FIELD_LIMITS,
    text_limit,
)
from byodb.content.version import MIN_SUPPORTED_SCHEMA_VERSION, columns_added_after
from byodb.errors import ByodbError


class InvalidStoredContent(ByodbError):
    """A row in the user's database holds a value the API could never have written."""

    code = "invalid_stored_content"
    status = 502

    def __init__(self, table: str, field: str):
        # Names where the problem is, never the value (it is the user's content).
        super().__init__(
            f"A row of {table} in your database has a {field} larger than the app allows, "
            "so it cannot be read.",
            hint=f"It was changed outside the app: shorten or delete that {field} in your "
                 "database.")


def public_columns(table: Table) -> list[Column[Any]]:
    """Columns an API returns: not bytes (files, audio), embeddings or search vectors, and
    only columns every supported schema version has (expand, then contract: a user's
    database may still be at ``MIN_SUPPORTED_SCHEMA_VERSION``, where a newer column does
    not exist, so a read naming it would fail)."""
    newer = columns_added_after(MIN_SUPPORTED_SCHEMA_VERSION)
    return [c for c in table.columns
            if not isinstance(c.type, (LargeBinary, Vector, TSVECTOR))
            and (table.name, c.name) not in newer]


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def row_dict(row: Any) -> dict[str, Any]:
    mapping: Mapping[str, Any] = row._mapping
    return {key: _plain(value) for key, value in mapping.items()}


# --- bounds ----------------------------------------------------------------------------------


def json_text_bytes(value: Any) -> int:
    """UTF-8 bytes of ``value`` as PostgreSQL prints it from ``jsonb`` — what a read of the
    stored value measures, so the API's check and the read's check agree exactly.

    Python's ``json`` and ``jsonb`` print alike (same separators and escapes) except floats:
    ``jsonb`` keeps numbers as ``numeric``, which writes ``1e+300`` out in 301 digits.
    """
    size = len(json.dumps(value, ensure_ascii=False).encode())
    return size + sum(len(format(Decimal(repr(f)), "f")) - len(repr(f))
                      for f in _floats(value))


def _floats(value: Any) -> Iterable[float]:
    pending = [value]  # a loop, not recursion: nesting depth is the client's choice
    while pending:
        item = pending.pop()
        if isinstance(item, float):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)


Unit = Literal["chars", "json_bytes", "bytes"]


@dataclass(frozen=True)
class Bound:
    """The largest value the API writes into one column, and how a read enforces it."""

    table: str
    field: str
    unit: Unit
    limit: int

    @staticmethod
    def of(column: Column[Any]) -> Bound | None:
        """The column's bound; ``None`` for fixed-size types (ids, times, numbers). A column
        of a subquery, CTE or alias has the bound of the table column it comes from."""
        column = next((c for c in column.base_columns if isinstance(c, Column)
                       and isinstance(c.table, Table)), column)
        table = column.table.name if isinstance(column.table, Table) else "a table"
        unit: Unit
        if isinstance(column.type, JSON):  # includes JSONB
            unit, default = "json_bytes", MAX_JSON_BYTES
        elif isinstance(column.type, LargeBinary):
            unit, default = "bytes", MAX_INLINE_BYTES
        elif isinstance(column.type, String):  # includes Text
            unit, default = "chars", text_limit(column.name)
        else:
            return None
        limit = STORED_FIELD_LIMITS.get((table, column.name), default)
        return Bound(table, column.name, unit, limit)

    def cut(self, expression: ColumnElement[Any]) -> ColumnElement[Any]:
        """``expression`` cut on the server to one unit over the limit: enough to see that
        a value is too long, never more."""
        over = self.limit + 1
        if self.unit == "bytes":
            return func.substr(expression, 1, over, type_=LargeBinary)
        if self.unit == "json_bytes":
            # As text: at most ``over`` characters, so at least ``over`` bytes when cut.
            return func.left(cast(expression, Text), over, type_=Text)
        return func.left(expression, over, type_=Text)

    def check(self, value: Any) -> Any:
        """The value as the API returns it (JSON decoded), or :class:`InvalidStoredContent`."""
        if value is None:
            return None
        if self.unit == "json_bytes":
            if len(value.encode()) > self.limit:
                raise InvalidStoredContent(self.table, self.field)
            return json.loads(value)
        if len(value) > self.limit:
            raise InvalidStoredContent(self.table, self.field)
        return value


@dataclass(frozen=True)
class Reader:
    """A select list whose variable-size columns are cut to their bounds, and the check of
    the rows it returns. Build one per statement shape (they are immutable and cheap)."""

    columns: tuple[ColumnElement[Any], ...]
    bounds: Mapping[str, Bound]

    @staticmethod
    def of(columns: Iterable[ColumnElement[Any]]) -> Reader:
        """Table columns get their bounds (keeping their names); other expressions — a
        labelled time, a count — are selected as they are."""
        selected: list[ColumnElement[Any]] = []
        bounds: dict[str, Bound] = {}
        for column in columns:
            bound = Bound.of(column) if isinstance(column, Column) else None
            if bound is None:
                selected.append(column)
                continue
            selected.append(bound.cut(column).label(column.name))
            bounds[column.name] = bound
        return Reader(tuple(selected), bounds)

    def read(self, row: Any) -> dict[str, Any]:
        """The row as a plain dict (bytes stay bytes), every bounded value checked."""
        data = row_dict(row)
        for key, bound in self.bounds.items():
            data[key] = bound.check(data[key])
        return data

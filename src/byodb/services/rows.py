"""Turning content rows into plain JSON-able dicts (internal columns left out)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pgvector.sqlalchemy import Vector
from sqlalchemy import Column, LargeBinary, Table
from sqlalchemy.dialects.postgresql import TSVECTOR


def public_columns(table: Table) -> list[Column[Any]]:
    """Columns an API returns: not bytes (files, audio), embeddings or search vectors."""
    return [c for c in table.columns
            if not isinstance(c.type, (LargeBinary, Vector, TSVECTOR))]


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

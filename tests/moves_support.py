"""Helpers of the data-move tests: pinned connections, inserting rows, snapshots."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from byodb.ids import new_id
from byodb.instances.lifecycle.move_plan import content_tables, set_comparable_session

PINNED = "-c search_path=pg_catalog,byodb"

Conn = AsyncConnection[Any]


async def connect(url: str, *, pinned: bool = True) -> Conn:
    """An autocommit connection; ``pinned`` puts pg_catalog first whatever the database says."""
    if pinned:
        return await psycopg.AsyncConnection.connect(url, autocommit=True, options=PINNED)
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def insert(conn: Conn, table: str, **values: Any) -> uuid.UUID:
    """Insert one row (a fresh id unless given); dicts are stored as JSON."""
    values.setdefault("id", new_id())
    row = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in values.items()}
    await conn.execute(sql.SQL("insert into {} ({}) values ({})").format(
        sql.Identifier("byodb", table), sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row))), tuple(row.values()))
    identifier: uuid.UUID = values["id"]
    return identifier


async def everything(conn: Conn, user_id: str | None = None) -> dict[str, list[str]]:
    """Per content table, the full text of every row (of ``user_id``, or of everyone)."""
    found: dict[str, list[str]] = {}
    async with conn.transaction():
        await set_comparable_session(conn)
        for table in content_tables():
            where = sql.SQL("where t.user_id::text = %s") if user_id else sql.SQL("")
            cursor = await conn.execute(sql.SQL(
                "select t::text from {} t {} order by t.id").format(
                sql.Identifier("byodb", table.name), where), (user_id,) if user_id else ())
            found[table.name] = [row[0] for row in await cursor.fetchall()]
    return found


def row_count(snapshot: dict[str, list[str]]) -> int:
    return sum(len(rows) for rows in snapshot.values())

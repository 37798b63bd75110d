"""Links between two of the user's rows through a junction table (a conversation in a
project, a tag on a note): link, unlink, and list what is linked from either side.

Both ends must be the user's rows (else ``not_found``, nothing written); linking twice is a
``conflict`` (the junction's UNIQUE pair decides, so concurrent requests cannot both win).
A listing returns the rows at the other end, each with ``linked_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, select

from byodb.errors import NotFound
from byodb.ids import new_id
from byodb.routing import Router
from byodb.services.resources import (
    Parent,
    content_transaction,
    fetch_owned,
    page_bounds,
    to_json,
)
from byodb.services.rows import Reader, public_columns


@dataclass(frozen=True)
class Link:
    """A junction table joining ``left`` rows to ``right`` rows of the same user."""

    table: Table
    left: Parent
    right: Parent
    time_column: str  # when the link was made: added_at | created_at
    added_by: bool = False  # project junctions record who added the item

    @property
    def conflict(self) -> str:
        return (f"this {self.right.label.replace('_', ' ')} is already linked to this "
                f"{self.left.label.replace('_', ' ')}")

    def ends(self, from_left: bool) -> tuple[Parent, Parent]:
        """(the end we start from, the end we list)."""
        return (self.left, self.right) if from_left else (self.right, self.left)


async def link_rows(router: Router, user_id: str, link: Link, left_id: Any,
                    right_id: Any) -> dict[str, Any]:
    """Link two rows; returns the right-hand row with ``linked_at``."""
    values: dict[str, Any] = {"id": new_id(), "user_id": user_id,
                              link.left.column: left_id, link.right.column: right_id}
    if link.added_by:
        values["added_by"] = user_id
    async with content_transaction(router, user_id, link.table,
                                   conflict=link.conflict) as conn:
        await fetch_owned(conn, user_id, link.left, left_id)
        await fetch_owned(conn, user_id, link.right, right_id)
        await conn.execute(link.table.insert().values(values))
        reader, query = _linked_query(link, user_id, from_left=True)
        row = (await conn.execute(query.where(link.right.table.c.id == right_id)
                                  .where(link.table.c[link.left.column] == left_id))).one()
        # Checked before the commit: a linked row the API could not have written (the
        # owner's own edit) fails the link instead of answering with an error after it.
        return to_json(reader, row)


async def unlink_rows(router: Router, user_id: str, link: Link, left_id: Any,
                      right_id: Any) -> None:
    async with content_transaction(router, user_id, link.table) as conn:
        await fetch_owned(conn, user_id, link.left, left_id)
        gone = (await conn.execute(
            delete(link.table).where(link.table.c.user_id == user_id,
                                     link.table.c[link.left.column] == left_id,
                                     link.table.c[link.right.column] == right_id)
            .returning(link.table.c.id))).first()
    if gone is None:
        raise NotFound(f"{link.right.label.replace('_', ' ')} is not linked to this "
                       f"{link.left.label.replace('_', ' ')}")


def _linked_query(link: Link, user_id: str, *, from_left: bool) -> tuple[Reader, Any]:
    """The rows at the other end with ``linked_at``, and the reader of what it returns."""
    _, other = link.ends(from_left)
    junction = link.table
    reader = Reader.of([*public_columns(other.table),
                        junction.c[link.time_column].label("linked_at")])
    return reader, (select(*reader.columns)
                    .join_from(junction, other.table,
                               other.table.c.id == junction.c[other.column])
                    .where(junction.c.user_id == user_id, other.table.c.user_id == user_id))


async def list_linked(router: Router, user_id: str, link: Link, from_id: Any, *,
                      from_left: bool = True, limit: int = 50,
                      offset: int = 0) -> list[dict[str, Any]]:
    """The rows linked to ``from_id`` (a left row, or a right row with ``from_left=False``),
    oldest link first."""
    start, _ = link.ends(from_left)
    limit, offset = page_bounds(limit, offset)
    reader, query = _linked_query(link, user_id, from_left=from_left)
    query = (query.where(link.table.c[start.column] == from_id)
             .order_by(link.table.c[link.time_column], link.table.c.id)
             .limit(limit).offset(offset))
    async with content_transaction(router, user_id, link.table) as conn:
        await fetch_owned(conn, user_id, start, from_id)
        rows = (await conn.execute(query)).all()
    return [to_json(reader, r) for r in rows]

"""The user's notices about their own database (kept on main in ``notifications``): the
health sweep writes one when their database goes down and one when it comes back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import desc, select
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.maindb.tables import notifications

DATABASE_NOTICE_KINDS = ("byod_down", "byod_recovered")


async def recent_database_notices(main: AsyncEngine, user_id: str,
                                  limit: int = 5) -> list[dict[str, Any]]:
    """The user's latest database notices, newest first."""
    async with main.connect() as conn:
        rows = (await conn.execute(
            select(notifications.c.kind, notifications.c.message, notifications.c.created_at)
            .where(notifications.c.user_id == user_id,
                   notifications.c.kind.in_(DATABASE_NOTICE_KINDS))
            .order_by(desc(notifications.c.created_at)).limit(limit))).all()
    return [{"kind": kind, "message": message, "created_at": created.isoformat()}
            for kind, message, created in rows]

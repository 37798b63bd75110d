"""Recording signed-in users in main's ``users`` table, once per process per user."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.maindb.tables import users
from byodb.web.auth import Principal


class UserDirectory:
    def __init__(self, main: AsyncEngine):
        self._main = main
        self._seen: set[tuple[str, bool]] = set()

    async def ensure(self, principal: Principal) -> None:
        key = (principal.user_id, principal.is_admin)
        if key in self._seen:
            return
        async with self._main.begin() as conn:
            stmt = insert(users).values(id=principal.user_id, is_admin=principal.is_admin)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[users.c.id], set_={"is_admin": principal.is_admin}))
        self._seen.add(key)

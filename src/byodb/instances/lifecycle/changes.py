"""State changes of users' rows on main, as this process makes them.

Every change goes through :func:`~byodb.instances.lifecycle.config_store.update_state`
(the transition checked, NOTIFY sent to other processes); :class:`StateChanges` also tells
this process's listeners at once (the router drops the user's route and pool). The
lifecycle, the health checks and the fleet migrator share one, so whoever changes a row,
the same listeners hear of it. It also holds the clock the facts are stamped with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.instances.lifecycle.config_store import DatabaseConfig, update_state

StateListener = Callable[[str], Awaitable[None]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class StateChanges:
    """Writes users' state on main and tells this process's listeners; one per process."""

    def __init__(self, main: AsyncEngine, *, clock: Clock = utc_now):
        self._main = main
        self._clock = clock
        self._listeners: list[StateListener] = []

    def on_change(self, listener: StateListener) -> None:
        """Call ``listener(user_id)`` after every state change this process makes (the
        router drops its route and pool; other processes learn it through NOTIFY)."""
        self._listeners.append(listener)

    def now(self) -> datetime:
        """The clock health facts and state changes are stamped and compared with."""
        return self._clock()

    async def changed(self, user_id: str) -> None:
        """Tell the listeners that ``user_id``'s row changed (by whatever wrote it)."""
        for listener in self._listeners:
            await listener(user_id)

    async def update(self, user_id: str, **kwargs: Any) -> DatabaseConfig | None:
        """:func:`update_state` with ``kwargs``, then the listeners."""
        config = await update_state(self._main, user_id, **kwargs)
        await self.changed(user_id)
        return config

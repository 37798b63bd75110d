"""The one place that decides where a query goes.

Decision order for ``Router.connect(user_id, table)`` (fail closed — DESIGN.md §2):

1. **Placement** of the table: unknown → :class:`UnknownTable`; ``main`` → the main engine.
2. **The user's access** (:meth:`DatabaseConfig.access`, cached per process, dropped on
   every state change): ``main`` → main; ``user`` → their database; ``held`` (a move or
   deploy under way) and ``unavailable`` (their database in error) → :class:`ByodUnavailable`.
3. **The handle** of their database for (user, credential version) from the cache; its
   pool replaces dead connections before use (pre-ping). A failure to connect, a pool
   that has no connection to give, or a transaction past its deadline moves the user to
   ``error`` and raises :class:`ByodUnavailable`. Nothing ever falls back to main.

A warm route costs no decryption and no main lookup. Content transactions that do land on
main take a shared per-user advisory lock and then re-read the user's access, so a data
move (which takes the lock exclusively) never loses a write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg
from sqlalchemy import Table, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.errors import ByodUnavailable, DecryptionError
from byodb.instances.config_store import DatabaseConfig, access_of, get_config, load_config
from byodb.instances.guard import ConnectionCheckError
from byodb.instances.handle import UserDatabase
from byodb.instances.holds import user_lock_key
from byodb.instances.lifecycle import InstanceLifecycle
from byodb.instances.states import ContentAccess, Placement
from byodb.routing.engines import EngineCache
from byodb.routing.placement import placement_of

log = logging.getLogger(__name__)

UNAVAILABLE_HINT = ("Your database may be paused or deleted, its credentials revoked, or the "
                    "network down. Fix it, then retry the connection in Settings → Database.")
_UNREACHABLE = "Your database is unreachable, so the app is paused for your account."
_STOPPED = "Your database stopped answering."
# Errors that mean "the server did not do it in time" rather than "the server is gone": a
# statement or lock timeout (e.g. the owner holds a table locked). They block this request
# (503) without marking the database unreachable.
_SLOW_SQLSTATES = frozenset({"57014", "55P03"})
_DOWN_CODES = frozenset({"unreachable", "timeout"})


@dataclass(frozen=True)
class Route:
    """What a user's content requests may do right now."""

    access: ContentAccess
    credential_version: int = 0

    @classmethod
    def of(cls, config: DatabaseConfig | None) -> Route:
        return cls(access_of(config), config.credential_version if config else 0)


class Router:
    def __init__(self, main_engine: AsyncEngine, lifecycle: InstanceLifecycle, *,
                 cache_size: int = 500, request_timeout_s: float = 30.0):
        self.main = main_engine
        self._lifecycle = lifecycle
        self._routes: dict[str, Route] = {}
        self._databases: EngineCache[UserDatabase] = EngineCache(cache_size)
        self._request_timeout_s = request_timeout_s
        lifecycle.on_change(self.forget_user)

    # -- step 2: the user's route -------------------------------------------------------
    async def route_for(self, user_id: str) -> Route:
        route = self._routes.get(user_id)
        if route is not None:
            return route
        route = Route.of(await load_config(self.main, user_id))
        self._routes[user_id] = route
        return route

    def invalidate(self, user_id: str) -> None:
        """Forget the cached route (called on every state change, locally or via NOTIFY)."""
        self._routes.pop(user_id, None)

    async def forget_user(self, user_id: str) -> None:
        """Forget the route and close the user's pool (new credentials, an outage, a
        recovery: pooled connections from before must not be reused)."""
        self.invalidate(user_id)
        await self._databases.dispose_user(user_id)

    # -- step 3: the handle -----------------------------------------------------------------
    async def _database(self, user_id: str, route: Route) -> UserDatabase:
        async def build() -> UserDatabase:
            config = await load_config(self.main, user_id)
            if config is None or config.credential_version != route.credential_version:
                self.invalidate(user_id)
                raise ByodUnavailable("Your database settings just changed; please retry.")
            try:
                return self._lifecycle.database_of(config)
            except DecryptionError:
                message = "Your saved database credentials can no longer be read."
                await self._mark(user_id, route, message, "credentials_unreadable")
                raise ByodUnavailable(message, hint="Save your database URL again in "
                                      "Settings → Database.") from None

        return await self._databases.get_or_create((user_id, route.credential_version), build)

    async def engine_for(self, user_id: str) -> tuple[AsyncEngine, Route]:
        """The engine holding ``user_id``'s content now (main or theirs), or raise."""
        route = await self.route_for(user_id)
        if route.access is ContentAccess.main:
            return self.main, route
        if route.access is ContentAccess.unavailable:
            raise ByodUnavailable(_UNREACHABLE, hint=UNAVAILABLE_HINT)
        if route.access is ContentAccess.held:
            raise ByodUnavailable("Your data is being moved between databases; try again in "
                                  "a moment.", hint="This usually takes seconds.")
        return (await self._database(user_id, route)).engine, route

    async def _mark(self, user_id: str, route: Route, message: str,
                    code: str = "unreachable") -> None:
        self.invalidate(user_id)
        await self._lifecycle.mark_unreachable(user_id, route.credential_version, message,
                                               code)

    async def _unreachable(self, user_id: str, route: Route, message: str,
                           cause: BaseException) -> ByodUnavailable:
        await self._mark(user_id, route, message)
        log.info("a user's database failed a routed call: %s", type(cause).__name__)
        return ByodUnavailable(_UNREACHABLE, hint=UNAVAILABLE_HINT)

    # -- the public entry point -----------------------------------------------------------
    @asynccontextmanager
    async def connect(self, user_id: str, table: Table | str) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction on the database that holds ``table`` for the user."""
        name = table if isinstance(table, str) else table.name
        if placement_of(name) is Placement.main:
            async with self.main.begin() as conn:
                yield conn
            return
        engine, route = await self.engine_for(user_id)
        if engine is self.main:
            async with self.main.begin() as conn:
                await self._hold_for_moves(conn, user_id)
                yield conn
            return
        async with self._on_user_database(user_id, route, engine) as conn:
            yield conn

    @asynccontextmanager
    async def _on_user_database(self, user_id: str, route: Route,
                                engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """A transaction on the user's database under the request deadline; every way it
        can fail becomes a 503 (and, when the database is gone, the ``error`` state)."""
        try:
            async with asyncio.timeout(self._request_timeout_s), engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            if _sqlstate(exc) in _SLOW_SQLSTATES:
                raise ByodUnavailable(
                    "Your database did not answer in time (a table may be locked).",
                    hint="Try again in a moment.") from exc
            if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
                raise await self._unreachable(user_id, route, _STOPPED, exc) from exc
            raise
        except (TimeoutError, PoolTimeout, OSError, psycopg.OperationalError) as exc:
            raise await self._unreachable(user_id, route, _STOPPED, exc) from exc
        except ConnectionCheckError as exc:
            # A new connection failed (the guard or the server said no). Down is "stopped
            # answering", however the pool found out; a refusal keeps its own words.
            if exc.code in _DOWN_CODES:
                raise await self._unreachable(user_id, route, _STOPPED, exc) from exc
            await self._mark(user_id, route, exc.message, exc.code)
            raise ByodUnavailable(exc.message, hint=exc.hint) from exc

    async def _hold_for_moves(self, conn: AsyncConnection, user_id: str) -> None:
        # Two statements on purpose: a statement's snapshot is taken when it starts, so the
        # state must be read by a statement that starts after the lock was granted.
        await conn.execute(text("select pg_advisory_xact_lock_shared(:k)"),
                           {"k": user_lock_key(user_id)})
        if access_of(await get_config(conn, user_id)) is not ContentAccess.main:
            self.invalidate(user_id)
            raise ByodUnavailable("Your data just moved; please retry.",
                                  hint="Retrying the request is safe.")

    async def close(self) -> None:
        await self._databases.dispose_all()
        self._routes.clear()


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)

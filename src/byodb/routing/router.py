"""The one place that decides where a query goes.

Decision order for ``Router.connect(user_id, table)`` (write it down, implement exactly it,
fail closed — DESIGN.md §2, STYLE.md §1):

1. **Placement** of the table: unknown → :class:`UnknownTable`; ``main`` → the main engine.
2. **The user's route** (cached per process, dropped on every state change):
   no BYOD, ``pending``, ``disconnected``, or ``error`` before the first deployment
   completed → main; ``connected`` → their database;
   ``error`` → :class:`ByodUnavailable`; ``moving`` → :class:`ByodUnavailable` (writes held).
3. **The engine** for (user, credential version) from the cache, built once from the
   decrypted, guard-checked URL; a connection failure moves the user to ``error`` and
   raises :class:`ByodUnavailable`. Nothing ever falls back to main.

A warm route costs no decryption and no main lookup. Content transactions that do land on
main take a shared per-user advisory lock and then re-check the user's state, so a data
move (which takes the lock exclusively) never loses a write.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Table, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byodb.errors import ByodUnavailable, DecryptionError
from byodb.instances.config_store import DatabaseConfig, load_config, update_state
from byodb.instances.connect import checked_target_for, user_async_engine
from byodb.instances.guard import ConnectionCheckError, Resolver, system_resolver
from byodb.instances.states import ConnectionStatus, DeploymentStatus
from byodb.routing.engines import EngineCache
from byodb.routing.placement import Placement, placement_of
from byodb.settings import Settings
from byodb.vault import Vault

log = logging.getLogger(__name__)

_ON_MAIN = frozenset({ConnectionStatus.none, ConnectionStatus.pending,
                      ConnectionStatus.disconnected})

UNAVAILABLE_HINT = ("Your database may be paused or deleted, its credentials revoked, or the "
                    "network down. Fix it, then retry the connection in Settings → Database.")


def user_lock_key(user_id: str) -> int:
    """A stable 63-bit advisory-lock key for a user's content on main."""
    return int.from_bytes(hashlib.sha256(b"byodb-user:" + user_id.encode()).digest()[:8],
                          "big") & 0x7FFF_FFFF_FFFF_FFFF


@contextmanager
def holding_user_writes_on_main(conn: Connection, user_id: str) -> Iterator[None]:
    """Hold every content write of ``user_id`` on main while the block runs (the data-move
    side of :meth:`Router._hold_for_moves`): a session advisory lock taken exclusively."""
    key = {"k": user_lock_key(user_id)}
    conn.execute(text("select pg_advisory_lock(:k)"), key)
    conn.commit()
    try:
        yield
    finally:
        conn.execute(text("select pg_advisory_unlock(:k)"), key)
        conn.commit()


@dataclass(frozen=True)
class Route:
    """Where a user's content lives right now."""

    placement: Placement
    status: ConnectionStatus
    credential_version: int = 0
    error: str | None = None


class Router:
    def __init__(self, main_engine: AsyncEngine, vault: Vault, settings: Settings,
                 resolver: Resolver = system_resolver):
        self.main = main_engine
        self._vault = vault
        self._settings = settings
        self._resolver = resolver
        self._routes: dict[str, Route] = {}
        self._engines = EngineCache(settings.engine_cache_size)

    # -- step 2: the user's route -------------------------------------------------------
    async def route_for(self, user_id: str) -> Route:
        route = self._routes.get(user_id)
        if route is not None:
            return route
        route = self._route_from(await load_config(self.main, user_id))
        self._routes[user_id] = route
        return route

    @staticmethod
    def _route_from(config: DatabaseConfig | None) -> Route:
        if config is None:
            return Route(Placement.main, ConnectionStatus.none)
        status = config.connection_status
        placement = Router._placement_for(status, config.deployment_status)
        return Route(placement, status, config.credential_version, config.connection_error)

    @staticmethod
    def _placement_for(status: ConnectionStatus, deployment: DeploymentStatus) -> Placement:
        if status in _ON_MAIN:
            return Placement.main
        if status is ConnectionStatus.error and deployment is not DeploymentStatus.deployed:
            # A first deployment that failed never switched the user over: their content
            # is still on main, so they keep working there.
            return Placement.main
        return Placement.user

    def invalidate(self, user_id: str) -> None:
        """Forget the cached route (called on every state change, locally or via NOTIFY)."""
        self._routes.pop(user_id, None)

    # -- step 3: the engine ---------------------------------------------------------------
    async def _user_engine(self, user_id: str, route: Route) -> AsyncEngine:
        async def build() -> AsyncEngine:
            config = await load_config(self.main, user_id)
            if config is None or config.credential_version != route.credential_version:
                self.invalidate(user_id)
                raise ByodUnavailable("Your database settings just changed; please retry.")
            try:
                target = await checked_target_for(config, self._vault, self._settings,
                                                  self._resolver)
            except ConnectionCheckError as exc:
                await self.mark_unreachable(user_id, route, exc.message, exc.code)
                raise ByodUnavailable(exc.message, hint=exc.hint) from None
            except DecryptionError:
                message = "Your saved database credentials can no longer be read."
                await self.mark_unreachable(user_id, route, message, "credentials_unreadable")
                raise ByodUnavailable(message, hint="Save your database URL again in "
                                      "Settings → Database.") from None
            return user_async_engine(target, pool_size=self._settings.user_pool_size)

        return await self._engines.get_or_create((user_id, route.credential_version), build)

    async def engine_for(self, user_id: str) -> tuple[AsyncEngine, Route]:
        """The engine holding ``user_id``'s content now (main or theirs), or raise."""
        route = await self.route_for(user_id)
        if route.placement is Placement.main:
            return self.main, route
        if route.status is ConnectionStatus.error:
            raise ByodUnavailable(
                "Your database is unreachable, so the app is paused for your account.",
                hint=UNAVAILABLE_HINT)
        if route.status is ConnectionStatus.moving:
            raise ByodUnavailable("Your data is being moved between databases; try again in "
                                  "a moment.", hint="This usually takes seconds.")
        return await self._user_engine(user_id, route), route

    async def mark_unreachable(self, user_id: str, route: Route, message: str,
                               code: str = "unreachable") -> None:
        """Record that a routed call could not reach the user's database."""
        self.invalidate(user_id)
        try:
            await update_state(
                self.main, user_id, connection=ConnectionStatus.error,
                expect_credential_version=route.credential_version,
                connection_error=message, connection_error_code=code,
            )
        except Exception:  # the original failure matters more than bookkeeping
            log.exception("could not record connection failure for a user")
        self.invalidate(user_id)

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
        try:
            conn_cm = engine.begin()
            conn = await conn_cm.__aenter__()
        except (TimeoutError, OperationalError, InterfaceError, OSError) as exc:
            await self.mark_unreachable(user_id, route, "Your database stopped answering.")
            raise ByodUnavailable("Your database is unreachable, so the app is paused for "
                                  "your account.", hint=UNAVAILABLE_HINT) from exc
        try:
            yield conn
        except DBAPIError as exc:
            await conn_cm.__aexit__(type(exc), exc, exc.__traceback__)
            if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
                await self.mark_unreachable(user_id, route, "Your database stopped answering.")
                raise ByodUnavailable("Your database is unreachable, so the app is paused "
                                      "for your account.", hint=UNAVAILABLE_HINT) from exc
            raise
        except BaseException as exc:
            await conn_cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            try:
                await conn_cm.__aexit__(None, None, None)
            except (OperationalError, InterfaceError) as exc:
                await self.mark_unreachable(user_id, route, "Your database stopped answering.")
                raise ByodUnavailable("Your database is unreachable; your last change may "
                                      "not be saved.", hint=UNAVAILABLE_HINT) from exc

    async def _hold_for_moves(self, conn: AsyncConnection, user_id: str) -> None:
        # Two statements on purpose: a statement's snapshot is taken when it starts, so the
        # state must be read by a statement that starts after the lock was granted.
        await conn.execute(text("select pg_advisory_xact_lock_shared(:k)"),
                           {"k": user_lock_key(user_id)})
        row = (await conn.execute(
            text("select connection_status, deployment_status from user_database_config "
                 "where user_id = :u"), {"u": user_id})).first()
        if row is None:
            return
        placement = self._placement_for(ConnectionStatus(row[0]), DeploymentStatus(row[1]))
        if placement is Placement.user:
            self.invalidate(user_id)
            raise ByodUnavailable("Your data just moved to your own database; please retry.",
                                  hint="Retrying the request is safe.")

    async def close(self) -> None:
        await self._engines.dispose_all()
        self._routes.clear()

    async def forget_user(self, user_id: str) -> None:
        self.invalidate(user_id)
        await self._engines.dispose_user(user_id)

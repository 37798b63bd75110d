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
4. **The file-storage flag** (``BYOD_FILE_STORAGE``): a transaction that stores file bytes
   (``connect(..., file_bytes=True)``) on a user's own database is refused with
   :class:`FileStorageDisabled` when the flag is off — never redirected to main. Decided
   here, with the route, so a move between the check and the write cannot slip past it.

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

from byodb.content.version import CONTENT_SCHEMA_VERSION, MIN_SUPPORTED_SCHEMA_VERSION
from byodb.errors import (
    ByodTimeout,
    ByodUnavailable,
    ByodUpdating,
    DecryptionError,
    FileStorageDisabled,
)
from byodb.instances.connection.failures import is_slow
from byodb.instances.connection.guard import ConnectionCheckError
from byodb.instances.connection.handle import UserDatabase
from byodb.instances.fleet.schema_migration import SchemaMigrator
from byodb.instances.health.passive import PassiveHealth, record_unreachable
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.config_store import (
    DatabaseConfig,
    access_of,
    get_config,
    load_config,
)
from byodb.instances.lifecycle.databases import UserDatabases
from byodb.instances.lifecycle.holds import user_lock_key
from byodb.instances.lifecycle.states import ContentAccess, Placement
from byodb.routing.engines import EngineCache
from byodb.routing.placement import placement_of
from byodb.routing.request_placement import note_placement

log = logging.getLogger(__name__)

UNAVAILABLE_HINT = ("Your database may be paused or deleted, its credentials revoked, or the "
                    "network down. Fix it, then retry the connection in Settings → Database.")
_UNREACHABLE = "Your database is unreachable, so the app is paused for your account."
_STOPPED = "Your database stopped answering."
_DOWN_CODES = frozenset({"unreachable", "timeout"})
# The first statement of a snapshot transaction (before any other: PostgreSQL requires it).
_SNAPSHOT = "set transaction isolation level repeatable read, read only"


@dataclass(frozen=True)
class Route:
    """What a user's content requests may do right now."""

    access: ContentAccess
    credential_version: int = 0
    # The content schema version the user's content is at (what services may write, see
    # byodb.content.has_column): main's is the latest (main's migrations deploy it and
    # readiness requires it); a user's database's is the version main recorded, which is
    # raised only after a migration committed, so never above what the database has.
    schema_version: int = CONTENT_SCHEMA_VERSION

    @classmethod
    def of(cls, config: DatabaseConfig | None) -> Route:
        access = access_of(config)
        version = CONTENT_SCHEMA_VERSION
        if access is not ContentAccess.main and config is not None:
            # Unknown counts as the oldest supported: never write a column it may lack.
            version = config.schema_version or MIN_SUPPORTED_SCHEMA_VERSION
        return cls(access, config.credential_version if config else 0, version)


class Router:
    def __init__(self, main_engine: AsyncEngine, *, databases: UserDatabases,
                 changes: StateChanges, migrator: SchemaMigrator,
                 cache_size: int = 500, request_timeout_s: float = 30.0,
                 file_storage: bool = True, passive: PassiveHealth | None = None):
        self.main = main_engine
        # Passive health: a committed transaction on a user's database is a health check.
        self.passive = passive or PassiveHealth(main_engine, clock=changes.now)
        self._file_storage = file_storage
        self._user_databases = databases
        self._changes = changes
        self._migrator = migrator
        self._routes: dict[str, Route] = {}
        self._databases: EngineCache[UserDatabase] = EngineCache(cache_size)
        self._request_timeout_s = request_timeout_s
        # The version gate: a user's database below ``schema_floor`` gets its migration to
        # the migrator's target queued at once and the request waits ``gate_wait_s`` for it
        # (attributes, so a test can raise the floor of a running app).
        self.schema_floor = MIN_SUPPORTED_SCHEMA_VERSION
        self.gate_wait_s = 3.0
        changes.on_change(self.forget_user)

    # -- step 2: the user's route -------------------------------------------------------
    async def route_for(self, user_id: str) -> Route:
        route = self._routes.get(user_id)
        if route is not None:
            return route
        route = Route.of(await load_config(self.main, user_id))
        self._routes[user_id] = route
        return route

    async def content_version(self, user_id: str) -> int:
        """The content schema version of the database holding the user's content now
        (:attr:`Route.schema_version`): the one thing services ask before writing a column
        that a newer version added. A cached route may say an older version than a
        migration just reached; that only leaves a new column unwritten, never fails."""
        return (await self.route_for(user_id)).schema_version

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
                return self._user_databases.of(config)
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
        if route.schema_version < self.schema_floor:
            route = await self._update_schema(user_id)
        return (await self._database(user_id, route)).engine, route

    async def _update_schema(self, user_id: str) -> Route:
        """The version gate: queue the user's migration, wait briefly for it, else 503
        ``byod_updating`` (their database is never used below the supported minimum)."""
        loop = asyncio.get_running_loop()
        config = await load_config(self.main, user_id)
        if config is not None and Route.of(config).schema_version < self.schema_floor:
            await self._migrator.request(config)
            deadline = loop.time() + self.gate_wait_s
            while loop.time() < deadline and config is not None and \
                    Route.of(config).schema_version < self.schema_floor:
                await asyncio.sleep(0.1)
                config = await load_config(self.main, user_id)
        self.invalidate(user_id)
        fresh = Route.of(config)
        if fresh.access is not ContentAccess.user:
            raise ByodUnavailable("Your database settings just changed; please retry.")
        if fresh.schema_version < self.schema_floor:
            raise ByodUpdating("Your database is being updated to a new schema version; "
                               "try again in a moment.", hint="This usually takes seconds.")
        self._routes[user_id] = fresh
        return fresh

    async def _mark(self, user_id: str, route: Route, message: str,
                    code: str = "unreachable") -> None:
        self.invalidate(user_id)
        await record_unreachable(self._changes, user_id, route.credential_version, message,
                                 code)

    async def _unreachable(self, user_id: str, route: Route, message: str,
                           cause: BaseException) -> ByodUnavailable:
        await self._mark(user_id, route, message)
        log.info("a user's database failed a routed call: %s", type(cause).__name__)
        return ByodUnavailable(_UNREACHABLE, hint=UNAVAILABLE_HINT)

    # -- the public entry point -----------------------------------------------------------
    @asynccontextmanager
    async def connect(self, user_id: str, table: Table | str, *,
                      file_bytes: bool = False, timeout_s: float | None = None,
                      snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction on the database that holds ``table`` for the user.
        ``file_bytes``: the transaction stores file bytes (step 4 of the decision order).
        ``timeout_s``: the deadline of a user-database transaction, when longer work (an
        export, an import) needs more than the request deadline. ``snapshot``: a read-only
        repeatable-read transaction (one consistent view for an export); its deadline passing
        ends it with a 503 but does not mark the database unreachable (a slow download is
        not a database that stopped answering)."""
        name = table if isinstance(table, str) else table.name
        if placement_of(name) is Placement.main:
            note_placement(Placement.main)
            async with self.main.begin() as conn:
                yield conn
            return
        engine, route = await self.engine_for(user_id)
        if engine is self.main:
            note_placement(Placement.main)
            async with self.main.begin() as conn:
                if snapshot:
                    await conn.execute(text(_SNAPSHOT))
                await self._hold_for_moves(conn, user_id)
                yield conn
            return
        if file_bytes and not self._file_storage:
            raise FileStorageDisabled(
                "Uploading files is turned off for accounts that keep their content on their "
                "own database.", hint="Nothing was stored. Paste the text into a message or "
                "a note instead, or ask the operator to turn file storage on.")
        note_placement(Placement.user)
        async with self._on_user_database(user_id, route, engine, timeout_s=timeout_s,
                                          snapshot=snapshot) as conn:
            yield conn

    @asynccontextmanager
    async def _on_user_database(self, user_id: str, route: Route, engine: AsyncEngine, *,
                                timeout_s: float | None = None,
                                snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A transaction on the user's database under the request deadline; every way it
        can fail becomes a 503 (and, when the database is gone, the ``error`` state)."""
        deadline_s = self._request_timeout_s if timeout_s is None else timeout_s
        deadline = asyncio.timeout(deadline_s)
        try:
            async with deadline, engine.connect() as conn:
                if snapshot:
                    conn = await conn.execution_options(byodb_snapshot=True)
                async with conn.begin():
                    yield conn
        except Exception as exc:
            failure = await self._routed_failure(user_id, route, exc, snapshot=snapshot,
                                                 deadline_passed=deadline.expired())
            if failure is exc:
                raise
            raise failure from exc
        self.passive.succeeded(user_id, route.credential_version)

    async def _routed_failure(self, user_id: str, route: Route, exc: Exception, *,
                              snapshot: bool, deadline_passed: bool) -> Exception:
        """What a failed transaction on the user's database becomes (``exc`` itself when
        it is not about the database: the caller's own error)."""
        if deadline_passed:
            # What surfaced may be the cleanup's error (a ROLLBACK on a connection cancelled
            # mid-COPY) rather than the TimeoutError: the deadline decides.
            if snapshot:
                return ByodTimeout("Reading your data took longer than allowed, so it was "
                                   "stopped.", hint="Try again later.")
            # The server's own statement limit is shorter than this deadline
            # (byodb.instances.connection.deadlines): a database that answers ends a slow
            # statement itself. Silence past it is a database that stopped answering.
            return await self._unreachable(user_id, route, _STOPPED, exc)
        if isinstance(exc, ConnectionCheckError):
            # A new connection failed (the guard or the server said no). Down is "stopped
            # answering", however the pool found out; a refusal keeps its own words.
            if exc.code in _DOWN_CODES:
                return await self._unreachable(user_id, route, _STOPPED, exc)
            await self._mark(user_id, route, exc.message, exc.code)
            return ByodUnavailable(exc.message, hint=exc.hint)
        driver_error = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
        if is_slow(driver_error):  # a statement or lock limit fired: the database answered
            return ByodTimeout(
                "Your database did not finish this request in time (a table may be locked, "
                "or the query was slow). You are still connected.",
                hint="Try again in a moment.")
        lost = (isinstance(exc, DBAPIError) and (
            exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)))
        if lost or isinstance(exc, PoolTimeout | OSError | psycopg.OperationalError):
            return await self._unreachable(user_id, route, _STOPPED, exc)
        return exc

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
        await self.passive.close()
        await self._databases.dispose_all()
        self._routes.clear()

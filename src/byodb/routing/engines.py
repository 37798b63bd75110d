"""The per-user engine cache: one value (an engine, or a handle owning one) per
(user, credential version), built once and shared.

Rules, in the order :meth:`EngineCache.get_or_create` applies them:

1. **A cached value** for the key is returned at once (and becomes most recently used).
2. **A build in flight** for the key is awaited, not repeated (single flight): every
   concurrent caller of one key gets the same value or the same error. Builds of different
   keys never wait for each other, so one user whose host takes seconds to resolve delays
   nobody else.
3. **Otherwise a build starts.** A failed build is not cached: the next call tries again.
   A successful one is cached unless it was overtaken while it ran (the user's values were
   disposed, or a newer credential version of the user is cached or building); an
   overtaken value still goes to its callers, then is disposed.
4. **After caching**, the user's older credential versions are disposed (new credentials
   mean a saved URL never reuses an old pool), and least recently used values beyond the
   size bound are evicted, so thousands of users cost a bounded number of connections.

Disposal of evicted or overtaken values runs in background tasks: closing a pool talks to
that user's server, which must not delay whoever's request caused the eviction.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

EngineKey = tuple[str, int]
"""(user id, credential version)."""


class Disposable(Protocol):
    """What the cache holds. ``dispose`` releases what the value keeps idle; a caller that
    already got the value may finish its work with it — as with SQLAlchemy's
    ``AsyncEngine.dispose``, which closes pooled idle connections while checked-out ones
    keep working. The cache relies on this: a value can be evicted while in use."""

    async def dispose(self) -> None: ...


V = TypeVar("V", bound=Disposable)


class EngineCache(Generic[V]):
    def __init__(self, max_size: int = 500) -> None:
        if max_size < 1:
            raise ValueError("the engine cache must hold at least one value")
        self._max = max_size
        self._ready: OrderedDict[EngineKey, V] = OrderedDict()
        self._building: dict[EngineKey, asyncio.Task[V]] = {}
        self._disposing: set[asyncio.Task[None]] = set()

    def peek(self, key: EngineKey) -> V | None:
        value = self._ready.get(key)
        if value is not None:
            self._ready.move_to_end(key)
        return value

    async def get_or_create(self, key: EngineKey, factory: Callable[[], Awaitable[V]]) -> V:
        value = self.peek(key)
        if value is not None:
            return value
        build = self._building.get(key)
        if build is None:
            build = asyncio.create_task(self._build(key, factory))
            build.add_done_callback(_retrieve_error)
            self._building[key] = build
        # Shielded: a caller that gives up (a request deadline) must not cancel the build
        # that other callers of the same key are waiting for.
        return await asyncio.shield(build)

    async def _build(self, key: EngineKey, factory: Callable[[], Awaitable[V]]) -> V:
        this = asyncio.current_task()
        try:
            value = await factory()
        finally:
            # Not ours any more if the user's values were disposed while we built.
            overtaken = self._building.get(key) is not this
            if not overtaken:
                del self._building[key]
        if overtaken or self._newer_exists(key):
            self._dispose_in_background([value])
        else:
            self._store(key, value)
        return value

    def _newer_exists(self, key: EngineKey) -> bool:
        user, version = key
        return any(k[0] == user and k[1] > version for k in (*self._ready, *self._building))

    def _store(self, key: EngineKey, value: V) -> None:
        self._ready[key] = value
        user, version = key
        # Older credentials of the same user are never used again; their builds in flight
        # are dropped (their values are disposed when they land).
        older = [k for k in (*self._ready, *self._building) if k[0] == user and k[1] < version]
        retired = [self._ready.pop(k) for k in older if k in self._ready]
        for k in older:
            self._building.pop(k, None)
        while len(self._ready) > self._max:
            retired.append(self._ready.popitem(last=False)[1])
        self._dispose_in_background(retired)

    def _dispose_in_background(self, values: list[V]) -> None:
        if not values:
            return
        task = asyncio.create_task(_dispose(values))
        self._disposing.add(task)
        task.add_done_callback(self._disposing.discard)

    async def dispose_user(self, user_id: str) -> None:
        """Dispose the user's cached values now; builds in flight for the user are dropped
        (their callers still get the value, which is then disposed, never cached)."""
        for key in [k for k in self._building if k[0] == user_id]:
            del self._building[key]
        await _dispose([self._ready.pop(k) for k in [k for k in self._ready if k[0] == user_id]])

    async def dispose_all(self) -> None:
        """Shut down: cancel builds in flight, dispose every value, wait for disposals."""
        builds = list(self._building.values())
        self._building.clear()
        for build in builds:
            build.cancel()
        await asyncio.gather(*builds, return_exceptions=True)
        values = list(self._ready.values())
        self._ready.clear()
        await _dispose(values)
        await asyncio.gather(*self._disposing, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._ready)


async def _dispose(values: Iterable[Disposable]) -> None:
    results = await asyncio.gather(*(v.dispose() for v in values), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            # Closing a pool to a server that went away may fail; the value is dropped
            # either way. The type only: the text could hold a host name.
            log.warning("disposing a cached user database failed: %s", type(result).__name__)


def _retrieve_error(task: asyncio.Task[Any]) -> None:
    """Mark a failed build's error as seen: every caller may have given up on it."""
    if not task.cancelled():
        task.exception()

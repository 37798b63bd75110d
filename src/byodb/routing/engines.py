"""The per-user engine cache: one small async pool per (user, credential version).

New credentials mean a new key, so a saved URL never reuses an old pool; least recently
used engines are disposed when the cache is full, so thousands of users cost a bounded
number of connections per app process.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

EngineKey = tuple[str, int]


class EngineCache:
    def __init__(self, max_engines: int = 500):
        self._engines: OrderedDict[EngineKey, AsyncEngine] = OrderedDict()
        self._max = max_engines
        self._lock = asyncio.Lock()

    def peek(self, key: EngineKey) -> AsyncEngine | None:
        engine = self._engines.get(key)
        if engine is not None:
            self._engines.move_to_end(key)
        return engine

    async def get_or_create(
        self, key: EngineKey, factory: Callable[[], Awaitable[AsyncEngine]]
    ) -> AsyncEngine:
        engine = self.peek(key)
        if engine is not None:
            return engine
        async with self._lock:
            engine = self.peek(key)
            if engine is None:
                engine = await factory()
                self._engines[key] = engine
                # Older credentials of the same user are never used again.
                stale = [k for k in self._engines if k[0] == key[0] and k[1] != key[1]]
                for old in stale:
                    await self._engines.pop(old).dispose()
                while len(self._engines) > self._max:
                    _, evicted = self._engines.popitem(last=False)
                    await evicted.dispose()
            return engine

    async def dispose_user(self, user_id: str) -> None:
        for key in [k for k in self._engines if k[0] == user_id]:
            await self._engines.pop(key).dispose()

    async def dispose_all(self) -> None:
        while self._engines:
            _, engine = self._engines.popitem()
            await engine.dispose()

    def __len__(self) -> int:
        return len(self._engines)

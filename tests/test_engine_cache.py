"""The engine cache builds each user's database handle once, never makes one user wait for
another's slow build, forgets failures, stays bounded, and retires old credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from byodb.routing.engines import EngineCache


class Handle:
    """A stand-in for a user database handle: records whether it was disposed."""

    def __init__(self, name: str):
        self.name = name
        self.disposed = asyncio.Event()

    async def dispose(self) -> None:
        self.disposed.set()


def factory_of(handle: Handle, *, before: asyncio.Event | None = None,
               calls: list[str] | None = None) -> Callable[[], Awaitable[Handle]]:
    async def build() -> Handle:
        if calls is not None:
            calls.append(handle.name)
        if before is not None:
            await before.wait()
        return handle
    return build


async def test_a_slow_build_for_one_user_does_not_delay_another_user() -> None:
    cache: EngineCache[Handle] = EngineCache(10)
    b_done = asyncio.Event()
    slow_a = asyncio.create_task(cache.get_or_create(("a", 1), factory_of(Handle("a"),
                                                                         before=b_done)))
    await asyncio.sleep(0)  # A's build has started and is blocked
    # A's build can only finish after B's call returned: if B waited for A, this deadlocks
    # (and the timeout fails the test instead of hanging).
    b = await asyncio.wait_for(cache.get_or_create(("b", 1), factory_of(Handle("b"))), 5)
    assert b.name == "b" and not slow_a.done()
    b_done.set()
    assert (await slow_a).name == "a"
    assert len(cache) == 2


async def test_concurrent_callers_of_one_key_share_one_build() -> None:
    cache: EngineCache[Handle] = EngineCache(10)
    release, calls = asyncio.Event(), []
    factory = factory_of(Handle("a"), before=release, calls=calls)
    waiters = [asyncio.create_task(cache.get_or_create(("a", 1), factory)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    handles = await asyncio.gather(*waiters)
    assert calls == ["a"]
    assert all(h is handles[0] for h in handles)
    assert await cache.get_or_create(("a", 1), factory) is handles[0]
    assert calls == ["a"]


async def test_a_failed_build_reaches_every_caller_and_is_not_cached() -> None:
    cache: EngineCache[Handle] = EngineCache(10)
    release, attempts = asyncio.Event(), []

    async def failing() -> Handle:
        attempts.append(1)
        await release.wait()
        raise ConnectionError("host unreachable")

    waiters = [asyncio.create_task(cache.get_or_create(("a", 1), failing)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert attempts == [1] and len(cache) == 0
    # The next call builds again and succeeds.
    handle = await cache.get_or_create(("a", 1), factory_of(Handle("a")))
    assert handle.name == "a" and len(cache) == 1


async def test_a_caller_giving_up_does_not_cancel_the_shared_build() -> None:
    cache: EngineCache[Handle] = EngineCache(10)
    release = asyncio.Event()
    factory = factory_of(Handle("a"), before=release)
    impatient = asyncio.create_task(cache.get_or_create(("a", 1), factory))
    patient = asyncio.create_task(cache.get_or_create(("a", 1), factory))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert (await patient).name == "a"
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_least_recently_used_values_are_evicted_and_disposed() -> None:
    cache: EngineCache[Handle] = EngineCache(2)
    a, b, c = Handle("a"), Handle("b"), Handle("c")
    await cache.get_or_create(("a", 1), factory_of(a))
    await cache.get_or_create(("b", 1), factory_of(b))
    assert cache.peek(("a", 1)) is a  # a is now more recently used than b
    await cache.get_or_create(("c", 1), factory_of(c))
    await asyncio.wait_for(b.disposed.wait(), 5)
    assert len(cache) == 2
    assert cache.peek(("b", 1)) is None
    assert not a.disposed.is_set() and not c.disposed.is_set()


async def test_a_new_credential_version_disposes_the_old_one() -> None:
    cache: EngineCache[Handle] = EngineCache(10)
    old, new, other = Handle("old"), Handle("new"), Handle("other")
    await cache.get_or_create(("a", 1), factory_of(old))
    await cache.get_or_create(("b", 1), factory_of(other))
    assert await cache.get_or_create(("a", 2), factory_of(new)) is new
    await asyncio.wait_for(old.disposed.wait(), 5)
    assert cache.peek(("a", 1)) is None and cache.peek(("a", 2)) is new
    assert not other.disposed.is_set()


async def test_an_old_version_finishing_after_a_new_one_is_handed_out_but_not_cached() -> None:
    cache: EngineCache[Handle] = EngineCache(10)
    release = asyncio.Event()
    old, new = Handle("old"), Handle("new")
    late = asyncio.create_task(cache.get_or_create(("a", 1), factory_of(old, before=release)))
    await asyncio.sleep(0)
    await cache.get_or_create(("a", 2), factory_of(new))
    release.set()
    assert await late is old  # its caller asked for exactly that version
    await asyncio.wait_for(old.disposed.wait(), 5)
    assert cache.peek(("a", 1)) is None and cache.peek(("a", 2)) is new


async def test_dispose_user_drops_only_that_user_and_a_build_in_flight() -> None:
    cache: EngineCache[Handle] = EngineCache(10)
    release = asyncio.Event()
    a, b, building = Handle("a"), Handle("b"), Handle("a2")
    await cache.get_or_create(("a", 1), factory_of(a))
    await cache.get_or_create(("b", 1), factory_of(b))
    in_flight = asyncio.create_task(cache.get_or_create(("a", 2),
                                                        factory_of(building, before=release)))
    await asyncio.sleep(0)
    await cache.dispose_user("a")
    assert a.disposed.is_set() and not b.disposed.is_set()
    release.set()
    assert await in_flight is building
    await asyncio.wait_for(building.disposed.wait(), 5)
    assert len(cache) == 1 and cache.peek(("b", 1)) is b


async def test_dispose_all_disposes_everything_and_cancels_builds() -> None:
    cache: EngineCache[Handle] = EngineCache(10)
    a, never = Handle("a"), asyncio.Event()
    await cache.get_or_create(("a", 1), factory_of(a))
    stuck = asyncio.create_task(cache.get_or_create(("b", 1),
                                                    factory_of(Handle("b"), before=never)))
    await asyncio.sleep(0)
    await cache.dispose_all()
    assert a.disposed.is_set() and len(cache) == 0
    with pytest.raises(asyncio.CancelledError):
        await stuck

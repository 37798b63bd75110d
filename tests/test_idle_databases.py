"""Idle users' databases are left to sleep (DESIGN.md §7): once the idle timeout passed
after a burst of requests, byodb holds no connection to users' servers; a user whose
requests succeed is never probed by the health sweep (passive health); a user who makes no
requests is probed at most once per idle interval; a database that failed is probed every
sweep, so it is found again as soon as it is back.

The sweeps run on a clock the test moves (five minutes per sweep, the default interval), on
the real main database and real user databases made as providers hand them out."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from byodb.alerts import AlertSettings
from byodb.assistant.embeddings import HashingEmbeddingModel, hashing_embedding
from byodb.errors import ByodUnavailable
from byodb.ids import new_id
from byodb.instances.connection.guard import GuardPolicy, parse_database_url
from byodb.instances.connection.handle import UserDatabase
from byodb.instances.health.checks import HealthChecks, HealthLimits
from byodb.instances.health.passive import PassiveHealth
from byodb.instances.health.sweep import HealthSweeper, SweepSummary, SweepTrigger
from byodb.instances.lifecycle.changes import StateChanges
from byodb.jobs.reembed import queue_user
from byodb.maindb.embedded import PostgresCluster
from byodb.routing import Router
from byodb.services.reembed import due_users
from byodb.settings import Settings
from tests.conftest import Api, count_rows
from tests.lifecycle_support import Connection, connect
from tests.providers import ProviderDatabase, provider_database

IDLE_TIMEOUT_S = 1
SWEEP_S = 300  # BYODB_HEALTH_INTERVAL's default: the fake clock moves this much per sweep
IDLE_INTERVAL_S = 3600
OLD_MODEL = HashingEmbeddingModel.name


@pytest.fixture
def settings(tmp_path: Path, main_url: str) -> Settings:
    # The app's own scheduled sweeps stay out of the way: one "just ran" and the interval is
    # far longer than a test (the test runs its sweeps itself, on its clock).
    with psycopg.connect(main_url, autocommit=True) as conn:
        conn.execute("insert into health_sweeps (id, trigger) "
                     "values (gen_random_uuid(), 'schedule')")
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_USER_IDLE_TIMEOUT=IDLE_TIMEOUT_S, BYODB_HEALTH_INTERVAL=10**6,
                    BYODB_HEALTH_IDLE_INTERVAL=IDLE_INTERVAL_S)


def byodb_connections(server: PostgresCluster, databases: list[str]) -> int:
    """Connections byodb holds open to ``databases`` (seen by the server's superuser)."""
    return count_rows(server.url(), "select count(*) from pg_stat_activity where "
                      "application_name = 'byodb' and datname = any(%s)", databases)


async def sessions_opened(database: ProviderDatabase) -> int:
    """How many connections were ever opened to the database (``pg_stat_database``). A
    closed connection's backend reports it as it exits: wait until none is left and the
    count holds still. The wait yields to the event loop: the app's idle timers run on it,
    and a wait that blocked it would keep open the very connections it waits for."""
    deadline = time.monotonic() + 15
    last: int | None = None
    while True:
        async with await psycopg.AsyncConnection.connect(database.server.url()) as conn:
            live = await (await conn.execute(
                "select count(*) from pg_stat_activity where datname = %s",
                (database.name,))).fetchone()
            row = await (await conn.execute(
                "select sessions from pg_stat_database where datname = %s",
                (database.name,))).fetchone()
        assert live is not None and row is not None
        if live[0] == 0 and row[0] == last:
            return int(row[0])
        last = int(row[0]) if live[0] == 0 else None
        assert time.monotonic() < deadline, "the database's sessions never ended"
        await asyncio.sleep(0.25)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Fleet:
    """The product's routing, passive health and sweep on a clock the test moves (sharing
    the running app's main database, vault and guard)."""

    clock: FakeClock
    router: Router
    sweeper: HealthSweeper

    async def sweep(self) -> SweepSummary:
        summary = await self.sweeper.sweep(SweepTrigger.schedule)
        assert summary is not None, "another sweep held the lock"
        return summary

    async def later(self, seconds: float = SWEEP_S) -> SweepSummary:
        """Move the clock on and run the scheduled sweep that is due then."""
        self.clock.now += timedelta(seconds=seconds)
        return await self.sweep()

    async def use(self, user: str) -> None:
        """One content request of ``user`` (a read of their conversations)."""
        async with self.router.connect(user, "conversations") as conn:
            await conn.execute(text("select count(*) from byodb.conversations "
                                    "where user_id = :u"), {"u": user})


@pytest.fixture
async def fleet(api: Api) -> AsyncIterator[Fleet]:
    runtime = api.app.state.runtime
    clock = FakeClock()
    changes = StateChanges(runtime.main, clock=clock)
    passive = PassiveHealth(runtime.main, clock=clock)
    router = Router(runtime.main, databases=runtime.databases, changes=changes,
                    migrator=runtime.migrator, passive=passive)
    checks = HealthChecks(runtime.main, runtime.databases, changes, HealthLimits(
        timeout_s=api.settings.health_timeout_s, failures=api.settings.health_failures))
    sweeper = HealthSweeper(runtime.main, checks, concurrency=4,
                            alerts=AlertSettings.from_settings(api.settings),
                            idle_interval_s=IDLE_INTERVAL_S, passive=passive)
    yield Fleet(clock, router, sweeper)
    await router.close()


async def connect_user(api: Api, user: str, server: Any) -> ProviderDatabase:
    """Connect ``user`` to a new database, then settle their re-embedding as the app's
    worker would on its next tick (nothing to do), so no background job visits the
    database while a test counts its sessions."""
    database = provider_database(server)
    await connect(api, user, Connection(database.url, database.url))
    await api.settle_reembedding(user)
    return database


def write_old_memories(database: ProviderDatabase, user: str, contents: list[str]) -> None:
    """Memories on the user's own database as an older embedding model left them (written
    by the database's owner, not through byodb)."""
    with psycopg.connect(database.url) as conn:
        for content in contents:
            vector = "[" + ",".join(map(str, hashing_embedding(content))) + "]"
            conn.execute("insert into byodb.memories (id, user_id, content, embedding, "
                         "embedding_model) values (%s, %s, %s, %s::vector, %s)",
                         (new_id(), user, content, vector, OLD_MODEL))


def memory_models(database: ProviderDatabase, user: str) -> set[str]:
    with psycopg.connect(database.url) as conn:
        rows = conn.execute("select distinct embedding_model from byodb.memories "
                            "where user_id = %s", (user,)).fetchall()
    return {row[0] for row in rows}


async def state(api: Api, user: str) -> dict[str, Any]:
    """The user's instance as the admin dashboard shows it."""
    shown = await api.client.get(f"/api/admin/byod/instances/{user}",
                                 headers=api.headers("root", admin=True))
    assert shown.status_code == 200, shown.text
    return dict(shown.json()["instance"])


async def test_connections_to_users_servers_close_once_users_are_idle(
        api: Api, user_server: PostgresCluster) -> None:
    users = ("amy", "bo", "cy", "di")
    databases = [await connect_user(api, user, user_server) for user in users]
    names = [d.name for d in databases]

    async def burst(user: str) -> None:
        created = await api.post("/api/conversations", user, json={"title": "burst"})
        assert created.status_code == 201, created.text
        listed = await asyncio.gather(*(api.get("/api/conversations", user) for _ in range(3)))
        assert all(r.status_code == 200 for r in listed)

    await asyncio.gather(*(burst(user) for user in users))
    assert byodb_connections(user_server, names) > 0, "the burst left no pooled connection"

    deadline = time.monotonic() + IDLE_TIMEOUT_S + 20
    while byodb_connections(user_server, names) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert byodb_connections(user_server, names) == 0

    # Asleep is not gone: the next request opens a connection again and finds everything.
    listed = await api.get("/api/conversations", "amy")
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1


async def test_a_connection_in_use_when_its_pool_is_disposed_closes_when_it_is_returned(
        user_server: PostgresCluster) -> None:
    """A user's pool is disposed (new credentials, an eviction, shutdown) while one of its
    connections serves a request: when the request ends, that connection is closed, not
    left idle in a pool nobody uses, keeping the database awake until garbage collection."""
    database = provider_database(user_server)
    handle = UserDatabase(parse_database_url(database.url),
                          GuardPolicy(allow_private=True, tls_required=False),
                          idle_timeout_s=IDLE_TIMEOUT_S)
    gc.disable()  # what is shown must not depend on a collection happening to run
    try:
        async with handle.engine.connect() as conn:
            await conn.execute(text("select 1"))
            await handle.dispose()
            assert byodb_connections(user_server, [database.name]) == 1  # still serving
        deadline = time.monotonic() + 10  # a closed connection's backend takes a moment
        while byodb_connections(user_server, [database.name]) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert byodb_connections(user_server, [database.name]) == 0
    finally:
        gc.enable()


async def test_re_embedding_waits_for_a_sleeping_database_to_wake_then_lets_it_sleep(
        api: Api, main_url: str, user_server: PostgresCluster) -> None:
    runtime = api.app.state.runtime
    model = runtime.embedder.name

    async def tick() -> None:
        """What the re-embedding tick and its jobs do, at once."""
        for user in await due_users(runtime.main, model, 1000):
            await runtime.reembedder.run(user)

    database = await connect_user(api, "ola", user_server)
    write_old_memories(database, "ola", ["I keep bees in the garden",
                                         "My sister lives in Porto"])
    # The model changed since her last run, and nothing used her database for two hours: a
    # scale-to-zero provider has put it to sleep.
    with psycopg.connect(main_url) as conn:
        conn.execute("update user_database_config set last_health_check_at = now() - "
                     "interval '2 hours', last_connection_test = now() - interval '2 hours', "
                     "last_schema_deploy = now() - interval '2 hours' where user_id = 'ola'")
        conn.execute("update jobs set detail = jsonb_set(detail::jsonb, '{model}', "
                     "to_jsonb(%s::text))::text where kind = 'reembed' and user_id = 'ola'",
                     (OLD_MODEL,))
    before = await sessions_opened(database)
    await tick()
    assert await sessions_opened(database) == before, "the re-embedding woke her database"
    assert memory_models(database, "ola") == {OLD_MODEL}

    # She comes back: her request wakes the database, and the next tick re-embeds her rows.
    listed = await api.get("/api/conversations", "ola")
    assert listed.status_code == 200, listed.text
    await runtime.router.passive.flush()
    await tick()
    assert memory_models(database, "ola") == {model}

    # Then it is left to sleep: byodb's connections to it close after the idle timeout,
    # and no later tick visits it (nothing is due for her).
    deadline = time.monotonic() + IDLE_TIMEOUT_S + 20
    while byodb_connections(user_server, [database.name]) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert byodb_connections(user_server, [database.name]) == 0
    settled = await sessions_opened(database)
    await tick()
    assert await sessions_opened(database) == settled


async def test_a_queued_re_embedding_whose_database_fell_asleep_leaves_it_asleep(
        api: Api, main_url: str, user_server: PostgresCluster) -> None:
    """A tick queued her run while her database was awake; by the time the job starts it
    has gone to sleep: the job asks again and does not wake it."""
    database = await connect_user(api, "oda", user_server)
    write_old_memories(database, "oda", ["I collect stamps"])
    with psycopg.connect(main_url) as conn:
        conn.execute("update user_database_config set last_health_check_at = now() - "
                     "interval '2 hours', last_connection_test = now() - interval '2 hours', "
                     "last_schema_deploy = now() - interval '2 hours' where user_id = 'oda'")
        conn.execute("update jobs set detail = jsonb_set(detail::jsonb, '{model}', "
                     "to_jsonb(%s::text))::text where kind = 'reembed' and user_id = 'oda'",
                     (OLD_MODEL,))
    before = await sessions_opened(database)
    assert await queue_user(api.app.state.job_app, "oda")
    await api.queued_reembedding_ended("oda")
    assert await sessions_opened(database) == before, "the queued run woke her database"
    assert memory_models(database, "oda") == {OLD_MODEL}


async def test_a_user_whose_requests_succeed_is_not_probed_and_an_idle_one_hourly(
        api: Api, fleet: Fleet, user_server: PostgresCluster) -> None:
    await connect_user(api, "ann", user_server)
    idle = await connect_user(api, "ian", user_server)
    await fleet.use("ann")
    before = await sessions_opened(idle)

    probed_at: list[datetime] = []
    checked = []
    for step in range(2 * IDLE_INTERVAL_S // SWEEP_S + 1):  # two simulated hours
        if step:
            await fleet.use("ann")  # ann keeps working: every five minutes a request
        summary = await (fleet.sweep() if step == 0 else fleet.later())
        checked.append(summary.checked)
        assert summary.failed == 0
        if summary.checked:
            probed_at.append(fleet.clock.now)

    # Only ian was ever probed (ann's requests are her checks): at the first sweep, then
    # once per idle interval; each probe is one connection to his server.
    assert sum(checked) == len(probed_at) == 3
    assert await sessions_opened(idle) - before == 3
    gaps = [later - earlier for earlier, later in pairwise(probed_at)]
    assert all(timedelta(seconds=IDLE_INTERVAL_S) <= gap
               <= timedelta(seconds=IDLE_INTERVAL_S + SWEEP_S) for gap in gaps), gaps
    shown = await state(api, "ann")
    assert shown["connection_status"] == "connected" and shown["health_error_code"] is None


async def test_an_idle_user_is_probed_at_most_once_per_idle_interval(
        api: Api, fleet: Fleet, user_server: PostgresCluster) -> None:
    idle = await connect_user(api, "ida", user_server)
    before = await sessions_opened(idle)
    hours = 6
    probes = 0
    last_probe: datetime | None = None
    for step in range(hours * IDLE_INTERVAL_S // SWEEP_S):
        summary = await (fleet.sweep() if step == 0 else fleet.later())
        assert summary.checked + summary.resting == 1
        if summary.checked:
            assert last_probe is None or \
                fleet.clock.now - last_probe >= timedelta(seconds=IDLE_INTERVAL_S)
            last_probe = fleet.clock.now
            probes += 1
    assert probes == hours  # t0, then every hour: 0 h … 5 h within six hours of sweeps
    assert await sessions_opened(idle) - before == probes

    # An operator's sweep still checks everyone when asked.
    asked = await fleet.sweeper.sweep(SweepTrigger.operator)
    assert asked is not None and asked.checked == 1


async def test_a_database_in_error_is_probed_every_sweep_and_recovers_alone(
        api: Api, fleet: Fleet, own_server: PostgresCluster) -> None:
    await connect_user(api, "eve", own_server)
    await fleet.use("eve")
    first = await fleet.sweep()
    assert (first.checked, first.resting) == (0, 1)  # her request was her check

    own_server.stop("immediate")
    await fleet.router.forget_user("eve")  # no pooled connection left from before
    # A failed connect is a failed check: she is blocked and recorded as failing at once.
    with pytest.raises(ByodUnavailable):
        await fleet.use("eve")
    shown = await state(api, "eve")
    assert shown["connection_status"] == "error"
    assert shown["consecutive_failures"] == 1 and shown["health_error_code"] == "unreachable"

    for failures in range(2, 6):  # every sweep probes her, minutes apart, not hourly
        summary = await fleet.later()
        assert (summary.checked, summary.failed) == (1, 1)
        assert (await state(api, "eve"))["consecutive_failures"] == failures

    PostgresCluster(own_server.root, port=own_server.port).start()
    back = await fleet.later()
    assert (back.checked, back.recovered) == (1, 1)
    shown = await state(api, "eve")
    assert shown["connection_status"] == "connected" and shown["consecutive_failures"] == 0
    await fleet.use("eve")
    # Healthy again, she rests: the next sweep leaves her database alone.
    assert (await fleet.later()).checked == 0

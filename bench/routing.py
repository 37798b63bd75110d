"""Routing overhead: the app's service layer (router → engine cache → user's database)
against the same work on a direct connection to the same database, measured in one run;
and the cold path, the first requests of many users at once.

Prints one JSON line per workload:

* ``read`` — list 50 conversations through the service layer vs the same query on a
  direct engine, interleaved; ``"ratio"`` = routed p50 / direct p50 (target ≤ 1.05). The
  user's database is made as providers make it (a plain owner role, pgvector in ``public``).
  The direct engine uses the driver the way every user-database connection must (no
  server-side prepared statements: a transaction pooler loses them, see PROVIDERS.md), so
  the ratio is the cost of routing and of the per-transaction session settings;
  ``ratio_vs_prepared`` sets the routed read against a direct engine that does prepare, for
  scale.
* ``pooled`` — the read through Debian's PgBouncer in transaction mode (default settings):
  routed vs a direct engine through the same pooler; ``"ratio"`` as for ``read`` (the
  session settings ride in the ``BEGIN`` round trip, so no extra round trip per
  transaction). Skipped (a line saying so) where ``pgbouncer`` is not installed.
* ``mix`` — that read plus writes and reads on notes, tasks, messages, memories and
  conversations, routed vs direct; ``"ratio"`` as for ``read``.
* ``cold`` — ``--cold-users`` users (default 50), each connected to their own database on
  the user server (saved and provisioned through the lifecycle, a few at a time). A fresh
  runtime (no route, no handle, no user pool cached; its main pool opened beforehand, as in
  a running process) then sends every user's first ``list_conversations`` at once
  (``asyncio.gather``). Reported: p50/p95 of those cold first requests; p50/p95 of warm
  requests (the same users, after warm-up, again all at once, ``--warm-rounds`` bursts)
  and ``cold_p95_vs_warm_p95``. Proof the users' first requests were not serialised:
  ``max_concurrent_builds``, the most handle builds of different users in flight at one
  time (a global build lock would make it 1). ``parallelism`` = sum of the cold times /
  wall time of the burst (note: with every request started at once it is ≥ N/2 even when
  the work is serialised, so it only corroborates). ``speedup_vs_sequential`` = the
  same cold first requests sent one after another (another fresh runtime; sum of their
  times) / wall time of the burst: throughput, bounded by CPU (on two busy cores a
  burst of connection set-ups cannot beat ~1). For scale, ``sequential_cold_p50_ms`` is
  set against ``direct_cold_p50_ms``: the same first query on a new direct engine per
  database (connection set-up without the router).

``--workload all`` (the default) runs cold, mix, pooled, read in that order, so the last line
still carries the read ratio; ``both`` runs mix and read, as before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _servers import create_databases, provider_database, servers
from sqlalchemy import Table, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from byodb.content.deploy import deploy_content_schema
from byodb.content.tables import conversations, memories, messages, notes, tasks
from byodb.ids import new_id
from byodb.instances.lifecycle.disconnect import DisconnectMode
from byodb.instances.lifecycle.states import ContentAccess
from byodb.maindb.urls import async_url
from byodb.runtime import Runtime, build_runtime
from byodb.services import resources
from byodb.services.areas import CONVERSATIONS
from byodb.services.rows import Reader, public_columns
from byodb.settings import Settings

USER = "bench-user"


class InlineJobs:
    """The lifecycle's job queue for a benchmark: the caller runs the job itself."""

    async def provision(self, user_id: str, credential_version: int, *,
                        premium: bool = False) -> None:
        return None

    async def disconnect(self, user_id: str, credential_version: int,
                         mode: DisconnectMode) -> None:
        return None

    async def migrate(self, record_id: uuid.UUID) -> None:
        return None


# The same bounded select list and row check the service uses (services/rows.py), so the
# ratio measures routing, not the bounded reads every request does on any database.
_READER = Reader.of(public_columns(conversations))


async def direct_list(engine: AsyncEngine, user: str = USER) -> None:
    query = (select(*_READER.columns).where(conversations.c.user_id == user)
             .order_by(conversations.c.is_pinned.desc(),
                       func.coalesce(conversations.c.last_message_at,
                                     conversations.c.created_at).desc(),
                       conversations.c.id.desc()).limit(50))
    async with engine.begin() as conn:
        [_READER.read(r) for r in (await conn.execute(query)).all()]


def mixed_statements(conversation_id: object) -> list[tuple[Table, Callable[[], Any]]]:
    """One round of reads and writes across areas: (table it routes by, statement)."""
    return [
        (notes, lambda: notes.insert().values(id=new_id(), user_id=USER, title="n",
                                              content="a note about routing")),
        (tasks, lambda: tasks.insert().values(id=new_id(), user_id=USER, title="t",
                                              status="todo")),
        (tasks, lambda: select(tasks.c.id, tasks.c.title).where(tasks.c.user_id == USER)
         .order_by(tasks.c.created_at.desc()).limit(20)),
        (messages, lambda: messages.insert().values(
            id=new_id(), conversation_id=conversation_id, user_id=USER, role="user",
            content="benchmark message", status="complete")),
        (memories, lambda: select(memories.c.id, memories.c.content)
         .where(memories.c.user_id == USER, memories.c.is_active.is_(True)).limit(20)),
        (conversations, lambda: update(conversations).where(
            conversations.c.id == conversation_id, conversations.c.user_id == USER
        ).values(title="renamed", updated_at=func.now())),
    ]


async def measure(fn: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000


async def run(iterations: int, workload: str, tmp: Path, main_url: str, user_url: str) -> dict:
    if workload == "pooled":
        with pooled(user_url) as pooled_url:
            if pooled_url is None:
                return {"benchmark": "routing", "workload": "pooled",
                        "skipped": "pgbouncer is not installed"}
            return await _measure(iterations, workload, tmp, main_url, pooled_url)
    return await _measure(iterations, workload, tmp, main_url, user_url)


@contextmanager
def pooled(url: str) -> Iterator[str | None]:
    """``url`` through Debian's PgBouncer in transaction mode (the test suite's launcher:
    default settings, run as an unprivileged user), or None where it is missing."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.pgbouncer import PgBouncer, pgbouncer_available
    from tests.providers import ProviderDatabase

    if not pgbouncer_available():
        yield None
        return
    parts = urlsplit(url)
    assert parts.port is not None and parts.username and parts.password
    database = ProviderDatabase(_Server(url), parts.path.lstrip("/"),
                                unquote(parts.username), unquote(parts.password), "public")
    bouncer = PgBouncer(parts.port, "transaction").start()
    try:
        yield bouncer.add(database)
    finally:
        bouncer.stop()


class _Server:
    """The owner's server as tests/providers.py's ``Server`` (for the pooler's auth file,
    read as the superuser of the bench's own server)."""

    def __init__(self, owner_url: str) -> None:
        self.port = urlsplit(owner_url).port
        self._superuser = SUPERUSER_URL[0]

    def url(self, database: str = "postgres", *, user: str = "postgres",
            password: str | None = None, driver: str = "postgresql") -> str:
        return urlunsplit(urlsplit(self._superuser)._replace(path=f"/{database}"))


SUPERUSER_URL: list[str] = []


async def _measure(iterations: int, workload: str, tmp: Path, main_url: str,
                   user_url: str) -> dict:
    settings = Settings(BYODB_DATA_DIR=tmp / "data", BYODB_ALLOW_PRIVATE_HOSTS=True)
    rt = build_runtime(settings, main_url, jobs=InlineJobs())
    saved = await rt.lifecycle.save(USER, user_url)
    await rt.lifecycle.provision(USER, saved.credential_version)
    state = await rt.lifecycle.state(USER)
    if state is None or state.access is not ContentAccess.user:
        raise RuntimeError(f"provisioning failed: {state.connection_error if state else ''}")
    for index in range(50):
        await resources.create_row(rt.router, USER, CONVERSATIONS, {"title": f"c{index}"})
    first = (await resources.list_rows(rt.router, USER, CONVERSATIONS, limit=1))[0]
    from uuid import UUID

    cid = UUID(first["id"])
    # Search path as byodb pins it (the owner's default one would not find the tables).
    direct_args = {"prepare_threshold": None, "options": "-c search_path=pg_catalog,byodb"}
    if workload == "pooled":  # a pooler refuses `options`: the tables are named in full
        direct_args = {"prepare_threshold": None}
    direct = create_async_engine(async_url(user_url), connect_args=direct_args,
                                 pool_size=settings.user_pool_size,
                                 max_overflow=settings.user_pool_size)
    prepared = create_async_engine(async_url(user_url),
                                   connect_args={k: v for k, v in direct_args.items()
                                                 if k != "prepare_threshold"},
                                   pool_size=settings.user_pool_size,
                                   max_overflow=settings.user_pool_size)
    mix = mixed_statements(cid)

    async def routed_op() -> None:
        # Reads go through the service layer; the mix runs the same statements through
        # the router as the direct side runs on its own engine.
        await resources.list_rows(rt.router, USER, CONVERSATIONS, limit=50)
        if workload == "mix":
            for table, statement in mix:
                async with rt.router.connect(USER, table) as conn:
                    await conn.execute(statement())

    async def direct_op(engine: AsyncEngine = direct) -> None:
        await direct_list(engine)
        if workload == "mix":
            for _, statement in mix:
                async with engine.begin() as conn:
                    await conn.execute(statement())

    async def prepared_op() -> None:
        await direct_list(prepared)

    ops = [routed_op, direct_op] + ([prepared_op] if workload != "pooled" else [])
    for _ in range(50):  # warm the pools and the route cache
        for op in ops:
            await op()
    times: dict[Callable[[], Awaitable[None]], list[float]] = {op: [] for op in ops}
    for index in range(iterations):  # interleaved, rotating order, to share the noise
        for op in ops[index % len(ops):] + ops[:index % len(ops)]:
            times[op].append(await measure(op))
    await direct.dispose()
    await prepared.dispose()
    await rt.close()
    routed_ms, direct_ms = times[routed_op], times[direct_op]
    routed_p50 = statistics.median(routed_ms)
    direct_p50 = statistics.median(direct_ms)
    figures = {"benchmark": "routing", "workload": workload, "iterations": iterations,
               "routed_p50_ms": round(routed_p50, 3), "direct_p50_ms": round(direct_p50, 3),
               "routed_p95_ms": round(statistics.quantiles(routed_ms, n=20)[-1], 3),
               "direct_p95_ms": round(statistics.quantiles(direct_ms, n=20)[-1], 3),
               "ratio": round(routed_p50 / direct_p50, 3)}
    if prepared_op in times:
        figures["ratio_vs_prepared"] = round(
            routed_p50 / statistics.median(times[prepared_op]), 3)
    return figures


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


async def _connect_user(rt: Runtime, user: str, url: str, conversations_each: int) -> None:
    """Save and provision ``user`` on ``url`` (through the lifecycle), then give them a few
    conversations so their first list has rows to read."""
    saved = await rt.lifecycle.save(user, url)
    await rt.lifecycle.provision(user, saved.credential_version)
    state = await rt.lifecycle.state(user)
    if state is None or state.access is not ContentAccess.user:
        raise RuntimeError(f"provisioning {user} failed: "
                           f"{state.connection_error if state else 'no state'}")
    for index in range(conversations_each):
        await resources.create_row(rt.router, user, CONVERSATIONS, {"title": f"c{index}"})


async def _warm_main_pool(rt: Runtime, connections: int = 10) -> None:
    """Open the main pool's connections (a running process has them already)."""
    async def ping() -> None:
        async with rt.main.connect() as conn:
            await conn.execute(text("select 1"))
            await asyncio.sleep(0.01)  # hold it, so the pings open distinct connections

    await asyncio.gather(*(ping() for _ in range(connections)))


class BuildCounter:
    """Counts the router's handle builds in flight at once (wraps its engine cache's
    factories; a bench-only peek at a private attribute)."""

    def __init__(self, rt: Runtime) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.builds = 0
        cache = rt.router._databases
        original = cache.get_or_create

        async def counted(key: Any, factory: Callable[[], Awaitable[Any]]) -> Any:
            async def build() -> Any:
                self.builds += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    return await factory()
                finally:
                    self.in_flight -= 1

            return await original(key, build)

        cache.get_or_create = counted  # type: ignore[method-assign]


async def run_cold(users_count: int, warm_rounds: int, tmp: Path, main_url: str,
                   user_url: str) -> dict:
    settings = Settings(BYODB_DATA_DIR=tmp / "data", BYODB_ALLOW_PRIVATE_HOSTS=True)
    users = [f"bench-cold-{index:03d}" for index in range(users_count)]
    setup_start = time.perf_counter()
    # Deploying the schema takes a second or more per database; deploy it once and copy
    # that database for every user (their provisioning then finds the schema in place).
    [template_url] = create_databases(user_url, ["cold_template"])
    async with await psycopg.AsyncConnection.connect(template_url, autocommit=True) as conn:
        await deploy_content_schema(conn)
    urls = create_databases(user_url, [f"cold_{index:03d}" for index in range(users_count)],
                            template="cold_template")
    rt = build_runtime(settings, main_url, jobs=InlineJobs())
    gate = asyncio.Semaphore(4)  # provisioning deploys the schema: a few at a time

    async def connect(user: str, url: str) -> None:
        async with gate:
            await _connect_user(rt, user, url, conversations_each=5)

    await asyncio.gather(*(connect(user, url) for user, url in zip(users, urls, strict=True)))
    await rt.close()
    setup_s = time.perf_counter() - setup_start

    async def first_list(rt: Runtime, user: str) -> float:
        return await measure(lambda: resources.list_rows(
            rt.router, user, CONVERSATIONS, limit=50))

    async def burst(rt: Runtime) -> tuple[list[float], float]:
        start = time.perf_counter()
        times = await asyncio.gather(*(first_list(rt, user) for user in users))
        return list(times), (time.perf_counter() - start) * 1000

    # The cold burst: a fresh runtime, every user's first request at once.
    rt = build_runtime(settings, main_url, jobs=InlineJobs())
    await _warm_main_pool(rt)
    counter = BuildCounter(rt)
    cold_ms, cold_wall_ms = await burst(rt)
    for _ in range(3):  # warm-up: routes and handles are cached now; fill the user pools
        await burst(rt)
    warm_ms: list[float] = []
    for _ in range(warm_rounds):  # the same shape as the cold burst
        warm_ms.extend((await burst(rt))[0])
    await rt.close()

    # The same cold first requests one after another, in another fresh runtime.
    rt = build_runtime(settings, main_url, jobs=InlineJobs())
    await _warm_main_pool(rt)
    sequential_ms = [await first_list(rt, user) for user in users]
    await rt.close()

    # The floor: the same first query on a new direct engine per database, one at a time.
    async def direct_first(user: str, url: str) -> float:
        engine = create_async_engine(async_url(url))
        try:
            return await measure(lambda: direct_list(engine, user))
        finally:
            await engine.dispose()

    direct_ms = [await direct_first(user, url) for user, url in zip(users, urls, strict=True)]

    cold_p95, warm_p95 = _p95(cold_ms), _p95(warm_ms)
    return {"benchmark": "routing", "workload": "cold", "users": users_count,
            "cold_p50_ms": round(statistics.median(cold_ms), 3),
            "cold_p95_ms": round(cold_p95, 3),
            "warm_p50_ms": round(statistics.median(warm_ms), 3),
            "warm_p95_ms": round(warm_p95, 3),
            "cold_p95_vs_warm_p95": round(cold_p95 / warm_p95, 3),
            "cold_wall_ms": round(cold_wall_ms, 3),
            "parallelism": round(sum(cold_ms) / cold_wall_ms, 2),
            "max_concurrent_builds": counter.max_in_flight, "builds": counter.builds,
            "sequential_cold_p50_ms": round(statistics.median(sequential_ms), 3),
            "speedup_vs_sequential": round(sum(sequential_ms) / cold_wall_ms, 2),
            "direct_cold_p50_ms": round(statistics.median(direct_ms), 3),
            "warm_samples": len(warm_ms), "setup_s": round(setup_s, 1)}


WORKLOADS = {"read": ["read"], "mix": ["mix"], "cold": ["cold"], "pooled": ["pooled"],
             "both": ["mix", "read"],
             "all": ["cold", "mix", "pooled", "read"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000,
                        help="measured routed/direct pairs per read or mix run")
    parser.add_argument("--workload", choices=list(WORKLOADS), default="all")
    parser.add_argument("--cold-users", type=int, default=50,
                        help="distinct users whose first requests run at once (cold)")
    parser.add_argument("--warm-rounds", type=int, default=10,
                        help="measured bursts of warm requests, all users each (cold)")
    args = parser.parse_args()
    with servers() as (main_url, user_url, tmp):
        SUPERUSER_URL.append(user_url)
        # One database, made as providers make it, for every workload (the pooled one
        # reaches it through PgBouncer: the same database with other credentials).
        owner_url = provider_database(user_url, "routing")
        for workload in WORKLOADS[args.workload]:
            if workload == "cold":
                figures = asyncio.run(run_cold(args.cold_users, args.warm_rounds, tmp,
                                               main_url, user_url))
            else:
                figures = asyncio.run(run(args.iterations, workload, tmp, main_url,
                                          owner_url))
            print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

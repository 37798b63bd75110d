"""Idle users' databases sleep: connections left open after a burst, and how often the
health sweep wakes a database whose user is idle.

Set-up: ``--users`` user databases (default 200) spread over ``--servers`` local PostgreSQL
servers (default 4, so several users per server; copies of one deployed database), each
with a ``user_database_config`` row on main, connected, as after a real provisioning.

Measured in the same run:

* ``connections_after_idle`` — connections byodb still holds to users' servers (counted in
  ``pg_stat_activity`` by ``application_name`` as the servers' superuser) once
  ``--idle-timeout`` seconds (``BYODB_USER_IDLE_TIMEOUT``) plus ``--grace`` passed after a
  burst in which every user made ``--requests`` content requests through the product's
  router, all users at once (target 0); ``connections_after_burst`` right after the burst;
* ``connections_after_idle_without_timeout`` — the same burst and wait through a router
  whose pools never close idle connections (what byodb did before): the baseline;
* ``opens_per_idle_db_per_day`` — connections opened to a database whose user is idle,
  over a simulated day of scheduled sweeps (``HealthSweeper.sweep``, one every
  ``--sweep-interval`` seconds of a clock the benchmark moves, ``--idle-interval`` =
  ``BYODB_HEALTH_IDLE_INTERVAL``), counted by the servers (``pg_stat_database.sessions``),
  per idle database, scaled to 24 h when ``--hours`` is shorter (target ≤ 24). Meanwhile
  ``--active-share`` of the users make a request before every sweep:
  ``probes_of_active_dbs`` is how many times the sweeps probed their databases (target 0:
  their requests are their checks);
* ``opens_per_db_per_day_every_sweep`` — the baseline: the same idle databases over one
  simulated hour of sweeps that probe every instance (as before), scaled to 24 h.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from _servers import create_databases, servers
from sqlalchemy import text

from byodb.alerts import AlertSettings
from byodb.content.deploy import deploy_content_schema
from byodb.instances.health.checks import HealthChecks, HealthLimits
from byodb.instances.health.passive import PassiveHealth
from byodb.instances.health.sweep import HealthSweeper, SweepTrigger
from byodb.instances.lifecycle.changes import StateChanges
from byodb.instances.lifecycle.config_store import URL_FIELD
from byodb.instances.lifecycle.databases import PoolLimits, UserDatabases
from byodb.maindb.embedded import PostgresCluster
from byodb.routing import Router
from byodb.runtime import Runtime, build_runtime
from byodb.settings import Settings
from byodb.vault import Secret, generate_key_hex

TEMPLATE = "idle_template"
os.environ.setdefault("BYODB_EMBEDDED_FAST", "1")  # scratch servers: no fsync


@dataclass(frozen=True)
class UserDb:
    user_id: str
    server: PostgresCluster
    name: str
    url: str


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def deploy_template(cluster: PostgresCluster) -> tuple[Any, int]:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"create database {TEMPLATE}")

    async def deploy() -> Any:
        async with await psycopg.AsyncConnection.connect(cluster.url(TEMPLATE),
                                                         autocommit=True) as conn:
            return await deploy_content_schema(conn)

    outcome = asyncio.run(deploy())
    return outcome.instance_id, outcome.version


def make_users(count: int, live: list[PostgresCluster], instance_id: Any) -> list[UserDb]:
    users: list[UserDb] = []
    for index, cluster in enumerate(live):
        if index:
            with psycopg.connect(cluster.url(TEMPLATE), autocommit=True) as conn:
                conn.execute("update byodb.byodb_meta set instance_id = %s",
                             (str(instance_id),))
        share = count // len(live) + (1 if index < count % len(live) else 0)
        names = [f"idle{index}_{n}" for n in range(share)]
        urls = create_databases(cluster.url(), names, template=TEMPLATE)
        users += [UserDb(f"user-{index}-{n:04d}", cluster, name, url)
                  for n, (name, url) in enumerate(zip(names, urls, strict=True))]
    return users


def byodb_connections(live: list[PostgresCluster]) -> int:
    """Connections byodb holds open to the users' servers now."""
    total = 0
    for cluster in live:
        with psycopg.connect(cluster.url()) as conn:
            row = conn.execute("select count(*) from pg_stat_activity "
                               "where application_name = 'byodb'").fetchone()
        total += int(row[0]) if row else 0
    return total


def sessions_opened(users: list[UserDb]) -> int:
    """Connections ever opened to these users' databases (``pg_stat_database``); waits
    until their backends are gone and the counts hold still (an exiting backend reports
    its session as it exits)."""
    by_server: dict[int, tuple[PostgresCluster, list[str]]] = {}
    for user in users:
        by_server.setdefault(id(user.server), (user.server, []))[1].append(user.name)
    deadline = time.monotonic() + 30
    last: int | None = None
    while True:
        live = total = 0
        for cluster, names in by_server.values():
            with psycopg.connect(cluster.url()) as conn:
                row = conn.execute("select count(*) from pg_stat_activity "
                                   "where datname = any(%s)", (names,)).fetchone()
                live += int(row[0]) if row else 0
                row = conn.execute("select coalesce(sum(sessions), 0) from pg_stat_database "
                                   "where datname = any(%s)", (names,)).fetchone()
                total += int(row[0]) if row else 0
        if live == 0 and total == last:
            return total
        last = total if live == 0 else None
        if time.monotonic() > deadline:
            raise RuntimeError("the users' database sessions never ended")
        time.sleep(0.25)


async def use(router: Router, user_id: str) -> None:
    async with router.connect(user_id, "conversations") as conn:
        await conn.execute(text("select count(*) from byodb.conversations where user_id = :u"),
                           {"u": user_id})


async def burst(router: Router, users: list[UserDb], requests: int) -> None:
    async def one(user: UserDb) -> None:
        for _ in range(requests):
            await use(router, user.user_id)

    await asyncio.gather(*(one(user) for user in users))


async def register(runtime: Runtime, users: list[UserDb], instance_id: Any,
                   version: int) -> None:
    async with runtime.main.begin() as conn:
        await conn.exec_driver_sql(
            "insert into user_database_config (user_id, encrypted_url, key_id, "
            "credential_version, redacted_url, host, connection_status, deployment_status, "
            "schema_version, instance_id, content_placement) values (%(user_id)s, "
            "%(ciphertext)s, %(key)s, 1, 'bench', '127.0.0.1', 'connected', 'deployed', "
            "%(version)s, %(instance)s, 'user')",
            [{"user_id": u.user_id, "key": runtime.vault.current_key_id,
              "instance": instance_id, "version": version,
              "ciphertext": runtime.vault.encrypt(Secret(u.url), user_id=u.user_id,
                                                  field=URL_FIELD)} for u in users])


async def measure_idle_connections(args: argparse.Namespace, runtime: Runtime,
                                   users: list[UserDb], live: list[PostgresCluster]
                                   ) -> dict[str, Any]:
    await burst(runtime.router, users, args.requests)
    after_burst = byodb_connections(live)
    await asyncio.sleep(args.idle_timeout + args.grace)
    after_idle = byodb_connections(live)
    await runtime.router.passive.flush()

    # The baseline: pools that never close idle connections.
    settings = runtime.settings
    keeping = UserDatabases(runtime.databases.policy, runtime.vault, PoolLimits(
        size=settings.user_pool_size, timeout_s=settings.connect_timeout_s * 2,
        idle_timeout_s=10**9))
    baseline = Router(runtime.main, databases=keeping,
                      changes=StateChanges(runtime.main), migrator=runtime.migrator)
    try:
        await burst(baseline, users, args.requests)
        await asyncio.sleep(args.idle_timeout + args.grace)
        kept = byodb_connections(live)
    finally:
        await baseline.close()
    return {"connections_after_burst": after_burst, "connections_after_idle": after_idle,
            "connections_after_idle_without_timeout": kept}


async def simulated_day(args: argparse.Namespace, runtime: Runtime,
                        users: list[UserDb]) -> dict[str, Any]:
    clock = FakeClock()
    changes = StateChanges(runtime.main, clock=clock)
    passive = PassiveHealth(runtime.main, clock=clock)
    router = Router(runtime.main, databases=runtime.databases, changes=changes,
                    migrator=runtime.migrator, passive=passive)
    alerts = AlertSettings.from_settings(runtime.settings)
    checks = HealthChecks(runtime.main, runtime.databases, changes, HealthLimits(
        timeout_s=runtime.settings.health_timeout_s,
        failures=runtime.settings.health_failures))
    sweeper = HealthSweeper(runtime.main, checks, concurrency=args.concurrency, alerts=alerts,
                            idle_interval_s=args.idle_interval, passive=passive)
    active_count = round(len(users) * args.active_share)
    active, idle = users[:active_count], users[active_count:]
    steps = round(args.hours * 3600 / args.sweep_interval)
    try:
        before = sessions_opened(idle)
        probes = sweeps_seconds = 0.0
        for step in range(steps):
            if step:
                clock.now += timedelta(seconds=args.sweep_interval)
            for user in active:
                await use(router, user.user_id)
            started = time.monotonic()
            summary = await sweeper.sweep(SweepTrigger.schedule)
            sweeps_seconds += time.monotonic() - started
            assert summary is not None and summary.failed == 0
            probes += summary.checked
        idle_opens = sessions_opened(idle) - before

        # The baseline: one simulated hour of sweeps that probe every instance.
        every = HealthSweeper(runtime.main, checks, concurrency=args.concurrency, alerts=alerts)
        base_before = sessions_opened(idle)
        base_steps = round(3600 / args.sweep_interval)
        for _ in range(base_steps):
            clock.now += timedelta(seconds=args.sweep_interval)
            await every.sweep(SweepTrigger.schedule)
        base_opens = sessions_opened(idle) - base_before
    finally:
        await router.close()
    per_day = 24 / args.hours
    return {
        "hours": args.hours, "sweeps": steps, "idle_dbs": len(idle), "active_dbs": len(active),
        "opens_per_idle_db_per_day": round(idle_opens / max(len(idle), 1) * per_day, 2),
        "probes_of_active_dbs": int(probes - idle_opens),
        "sweep_mean_ms": round(sweeps_seconds / max(steps, 1) * 1000, 1),
        "opens_per_db_per_day_every_sweep": round(
            base_opens / max(len(idle), 1) * 24 * base_steps * args.sweep_interval / 3600, 2),
    }


async def run(args: argparse.Namespace, main_url: str, live: list[PostgresCluster],
              scratch: Path, instance_id: Any, version: int) -> dict[str, Any]:
    users = make_users(args.users, live, instance_id)
    settings = Settings(BYODB_DATA_DIR=scratch / "data", BYODB_ENV="development",
                        BYODB_ALLOW_PRIVATE_HOSTS=True, BYOD_ENCRYPTION_KEY=generate_key_hex(),
                        BYODB_USER_IDLE_TIMEOUT=args.idle_timeout,
                        BYODB_HEALTH_INTERVAL=args.sweep_interval,
                        BYODB_HEALTH_IDLE_INTERVAL=args.idle_interval,
                        BYODB_HEALTH_CONCURRENCY=args.concurrency,
                        BYODB_ENGINE_CACHE_SIZE=max(500, args.users))
    runtime = build_runtime(settings, main_url)
    try:
        await register(runtime, users, instance_id, version)
        figures = await measure_idle_connections(args, runtime, users, live)
        figures |= await simulated_day(args, runtime, users)
    finally:
        await runtime.close()
    return {"benchmark": "idle", "users": len(users), "servers": len(live),
            "idle_timeout_s": args.idle_timeout, "idle_interval_s": args.idle_interval,
            "sweep_interval_s": args.sweep_interval, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--servers", type=int, default=4, help="users' servers")
    parser.add_argument("--requests", type=int, default=1, help="requests per user")
    parser.add_argument("--idle-timeout", type=float, default=2.0,
                        help="BYODB_USER_IDLE_TIMEOUT (s)")
    parser.add_argument("--grace", type=float, default=1.0,
                        help="seconds waited past the idle timeout before counting")
    parser.add_argument("--idle-interval", type=float, default=3600.0,
                        help="BYODB_HEALTH_IDLE_INTERVAL (s, simulated)")
    parser.add_argument("--sweep-interval", type=float, default=300.0,
                        help="BYODB_HEALTH_INTERVAL (s, simulated)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    parser.add_argument("--active-share", type=float, default=0.1,
                        help="share of users who make a request before every sweep")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with servers() as (main_url, _user_url, scratch):
        live = [PostgresCluster(scratch / "user")]
        live += [PostgresCluster(scratch / f"user{n}").start() for n in range(1, args.servers)]
        try:
            live[0].start()  # already running: picks up its port
            instance_id, version = deploy_template(live[0])
            for cluster in live[1:]:
                deploy_template(cluster)
            figures = asyncio.run(run(args, main_url, live, scratch, instance_id, version))
        finally:
            for cluster in live[1:]:
                cluster.stop("immediate")
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

"""Health sweep over many instances, against a bare asyncio loop doing the same checks.

Set-up: ``--instances`` user databases (default 1,000). 85% live on ``--servers`` local
PostgreSQL servers (copies of one deployed database), 10% point at a server that was
started and stopped (connection refused), 5% at a black-hole listener (accepts TCP, never
answers a byte). Each has a ``user_database_config`` row on main, connected, with its URL
encrypted, as after a real provisioning.

Measured in the same run:

* ``seconds`` — the median of ``--rounds`` (3) sweeps through the product
  (``HealthSweeper.sweep``: guard, decrypt, connect, read ``byodb_meta``, the batched facts
  on main; the failure threshold is above the rounds, so every round sees the same fleet),
  ``BYODB_HEALTH_CONCURRENCY`` = ``--concurrency``, deadline ``--timeout``;
* ``bare_seconds`` — the median of as many rounds, interleaved with the sweeps, of the same
  targets checked by a bare asyncio loop: ``psycopg`` connect +
  ``select 1`` under a semaphore of the same size and the same deadline;
* ``ratio_vs_bare`` = seconds / bare_seconds (target ≤ 1.25);
* ``max_open_connections`` — the most sockets this process held open (established or
  connecting) to any target at once during the sweep, sampled from ``/proc`` every
  millisecond or so in a thread (target: never above ``concurrency``);
* ``projected_10k_seconds`` — seconds * 10,000 / instances (target < 60), and
  ``bare_projected_10k_seconds``, the same for the bare loop (the machine's own bound:
  every check is a new PostgreSQL connection with SCRAM authentication, CPU on both ends).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from _servers import create_databases, servers

from byodb.content.deploy import deploy_content_schema
from byodb.instances.lifecycle.config_store import URL_FIELD
from byodb.maindb.embedded import PostgresCluster
from byodb.runtime import build_runtime
from byodb.settings import Settings
from byodb.vault import Secret, generate_key_hex

TEMPLATE = "health_template"
# The servers' data is thrown away after the run: no fsync, so creating a thousand
# databases takes seconds, not minutes (the sweep itself reads; it does not write there).
os.environ.setdefault("BYODB_EMBEDDED_FAST", "1")


class BlackHole:
    """Accepts TCP connections on 127.0.0.1 and never answers."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> BlackHole:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.read(65536):
                    pass
            except (OSError, asyncio.CancelledError):
                pass  # a listener that ends with the loop: nothing to report
            finally:
                writer.transport.abort()

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0, backlog=4096)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


class SocketSampler:
    """The most sockets of this process open at once to the target ports (client side,
    established or connecting), read from /proc in a thread while work runs."""

    _STATES = {"01", "02"}  # ESTABLISHED, SYN_SENT

    def __init__(self, ports: set[int]):
        self.ports = ports
        self.peak = 0
        self.active = False  # sampled only while set
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        mine = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                mine.add(link[8:-1])
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as handle:
                    next(handle)
                    for line in handle:
                        fields = line.split()
                        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                        if remote_port in self.ports and fields[3] in self._STATES \
                                and fields[9] in mine:
                            count += 1
            except FileNotFoundError:
                continue
        return count

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.active:
                self.peak = max(self.peak, self._count())
            time.sleep(0.001)

    def __enter__(self) -> SocketSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def deploy_template(cluster: PostgresCluster) -> uuid.UUID:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"create database {TEMPLATE}")
    async with await psycopg.AsyncConnection.connect(cluster.url(TEMPLATE),
                                                     autocommit=True) as conn:
        outcome = await deploy_content_schema(conn)
    return outcome.instance_id


def targets(count: int, live: list[PostgresCluster], gone: PostgresCluster,
            hole_port: int) -> list[str]:
    """The instances' URLs: 85% spread over the live servers, 10% stopped, 5% black hole."""
    stopped = count * 10 // 100
    holes = count * 5 // 100
    alive = count - stopped - holes
    urls: list[str] = []
    for index, cluster in enumerate(live):
        share = alive // len(live) + (1 if index < alive % len(live) else 0)
        names = [f"h{index}_{n}" for n in range(share)]
        urls += create_databases(cluster.url(), names, template=TEMPLATE)
    urls += [gone.url(f"gone_{n}") for n in range(stopped)]
    urls += [f"postgresql://u:p@127.0.0.1:{hole_port}/hole_{n}" for n in range(holes)]
    return urls


async def bare_sweep(urls: list[str], concurrency: int, timeout_s: float) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one(url: str) -> None:
        async with slots:
            try:
                async with asyncio.timeout(timeout_s):
                    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
                    try:
                        await conn.execute("select 1")
                    finally:
                        await conn.close()
            except (TimeoutError, psycopg.Error, OSError):
                pass

    started = time.monotonic()
    await asyncio.gather(*(one(url) for url in urls))
    return time.monotonic() - started


async def run(args: argparse.Namespace, main_url: str, live: list[PostgresCluster],
              gone: PostgresCluster, scratch: Path) -> dict[str, Any]:
    instance_id = await deploy_template(live[0])
    for cluster in live[1:]:
        # The same deployed schema on every live server, with the one instance id the
        # configs record (copies of one deployed database, as the template copies are).
        await deploy_template(cluster)
        with psycopg.connect(cluster.url(TEMPLATE), autocommit=True) as conn:
            conn.execute("update byodb.byodb_meta set instance_id = %s", (str(instance_id),))
    hole = await BlackHole().start()
    urls = targets(args.instances, live, gone, hole.port)
    settings = Settings(BYODB_DATA_DIR=scratch / "data", BYODB_ENV="development",
                        BYODB_ALLOW_PRIVATE_HOSTS=True, BYOD_ENCRYPTION_KEY=generate_key_hex(),
                        BYODB_HEALTH_CONCURRENCY=args.concurrency,
                        BYODB_HEALTH_TIMEOUT=args.timeout, BYODB_CONNECT_TIMEOUT=args.timeout,
                        # Every round sees the same fleet: no instance crosses the failure
                        # threshold, so no round pays for transitions the others do not.
                        BYODB_HEALTH_FAILURES=args.rounds + 1)
    runtime = build_runtime(settings, main_url)
    try:
        rows = [{"user_id": f"bench-{n:05d}", "url": url} for n, url in enumerate(urls)]
        async with runtime.main.begin() as conn:
            await conn.exec_driver_sql(
                "insert into user_database_config (user_id, encrypted_url, key_id, "
                "credential_version, redacted_url, host, connection_status, "
                "deployment_status, schema_version, instance_id, content_placement) "
                "values (%(user_id)s, %(ciphertext)s, %(key)s, 1, 'bench', '127.0.0.1', "
                "'connected', 'deployed', 1, %(instance)s, 'user')",
                [{"user_id": r["user_id"], "key": runtime.vault.current_key_id,
                  "instance": instance_id,
                  "ciphertext": runtime.vault.encrypt(Secret(r["url"]), user_id=r["user_id"],
                                                      field=URL_FIELD)} for r in rows])
        ports = {hole.port, gone.port or 0, *(c.port or 0 for c in live)}
        # Warm both paths once (imports, the main pool), unmeasured.
        await bare_sweep(urls[:5], args.concurrency, args.timeout)
        # Interleaved rounds (bare, sweep, bare, sweep, …): this machine's load drifts, so
        # each side's median over the rounds is compared, measured side by side.
        bare_runs: list[float] = []
        sweep_runs: list[float] = []
        with SocketSampler(ports) as bare_sampler, SocketSampler(ports) as sampler:
            for _ in range(args.rounds):
                bare_sampler.active = True
                bare_runs.append(await bare_sweep(urls, args.concurrency, args.timeout))
                bare_sampler.active = False
                sampler.active = True
                started = time.monotonic()
                summary = await runtime.health.sweeper.sweep()
                sweep_runs.append(time.monotonic() - started)
                sampler.active = False
        seconds, bare_seconds = statistics.median(sweep_runs), statistics.median(bare_runs)
        assert summary is not None
    finally:
        await runtime.close()
        hole.close()
    return {
        "benchmark": "health_sweep", "instances": len(urls), "seconds": round(seconds, 3),
        "bare_seconds": round(bare_seconds, 3), "rounds": args.rounds,
        "sweep_runs": [round(x, 3) for x in sweep_runs],
        "bare_runs": [round(x, 3) for x in bare_runs],
        "ratio_vs_bare": round(seconds / bare_seconds, 3),
        "max_open_connections": sampler.peak, "bare_max_open_connections": bare_sampler.peak,
        "concurrency": args.concurrency, "timeout_s": args.timeout,
        "checked": summary.checked, "healthy": summary.healthy, "failed": summary.failed,
        "projected_10k_seconds": round(seconds * 10_000 / max(len(urls), 1), 1),
        # The same projection for the bare loop: what this machine allows at all.
        "bare_projected_10k_seconds": round(bare_seconds * 10_000 / max(len(urls), 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=3, help="live user servers")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=2.0, help="per-check deadline (s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved bare/sweep rounds; medians are compared")
    args = parser.parse_args()
    with servers() as (main_url, _user_url, scratch):
        live = [PostgresCluster(scratch / "user")]
        live += [PostgresCluster(scratch / f"user{n}").start() for n in range(1, args.servers)]
        gone = PostgresCluster(scratch / "gone").start()
        gone.stop("immediate")
        try:
            live[0].start()  # already running: picks up its port
            figures = asyncio.run(run(args, main_url, live, gone, scratch))
        finally:
            for cluster in live[1:]:
                cluster.stop("immediate")
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

"""A fleet for schema-run tests: users whose own databases are at content schema version 1
(deployed by byodb's deploy at target 1, copied from a template), recorded on main as
connected; and helpers to watch a run."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.content.deploy import deploy_content_schema, deployed_schema
from byodb.instances.connection.guard import parse_database_url
from byodb.instances.fleet import runs as fleet_runs
from byodb.instances.lifecycle import config_store
from byodb.instances.lifecycle.states import ConnectionStatus, DeploymentStatus
from byodb.maindb.embedded import PostgresCluster
from byodb.vault import Secret, Vault
from tests.conftest import create_database
from tests.providers import create_login_role, enable_vector

V1_TEMPLATE = "fleet_v1_template"

# A step of our own for tests that need to see how often a step ran or make one fail: it
# records itself in public.fleet_step_log and creates byodb.fleet_probe (a database that
# already has that table fails the step: a permanent error).
PROBE_STEPS: dict[int, tuple[str, ...]] = {
    2: ("CREATE TABLE byodb.fleet_probe (id integer)",
        "ALTER TABLE byodb.messages ADD COLUMN fleet_probe text",
        "INSERT INTO public.fleet_step_log (version) VALUES (2)"),
}


FLEET_OWNER = "fleet_owner"
FLEET_OWNER_PASSWORD = "fleet-owner-pw"
"""The plain login role owning the fleet's databases (one role for all of them, as a
self-hosted server would have; no superuser)."""


def _owner_url(cluster: PostgresCluster, database: str) -> str:
    return cluster.url(database, user=FLEET_OWNER, password=FLEET_OWNER_PASSWORD)


def v1_template(cluster: PostgresCluster) -> str:
    """A database at schema version 1 with a little content, to copy (made once), shaped as
    a provider hands it out: owned by :data:`FLEET_OWNER`, pgvector enabled in ``public``
    by the administrator, the schema deployed by the owner."""
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s",
                        (V1_TEMPLATE,)).fetchone():
            return V1_TEMPLATE
        if not conn.execute("select 1 from pg_roles where rolname = %s",
                            (FLEET_OWNER,)).fetchone():
            create_login_role(cluster, FLEET_OWNER, FLEET_OWNER_PASSWORD)
    building = f"{V1_TEMPLATE}_{uuid.uuid4().hex[:6]}"  # renamed once complete
    create_database(cluster, building, owner=FLEET_OWNER)
    enable_vector(cluster, building, "public")

    async def deploy() -> None:
        async with await psycopg.AsyncConnection.connect(_owner_url(cluster, building),
                                                         autocommit=True) as conn:
            await deploy_content_schema(conn, target_version=1)
            await conn.execute("create table public.fleet_step_log (version int, "
                               "at timestamptz default now())")
            await conn.execute("insert into byodb.tags (id, user_id, name, scope) values "
                               "(gen_random_uuid(), 'someone', 'work', 'global')")

    asyncio.run(deploy())  # called from a synchronous (session) fixture
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f'alter database "{building}" rename to "{V1_TEMPLATE}"')
    return V1_TEMPLATE


async def connected_at_v1(main: AsyncEngine, vault: Vault, cluster: PostgresCluster,
                          user_id: str, *, via: Callable[[str], str] | None = None) -> str:
    """A user whose content is on their own database at version 1 (a copy of the
    template, owned by the fleet's owner role), recorded on main as byodb's deploy leaves
    it; ``via`` rewrites the URL byodb saves (a proxy in front). Returns the database's
    direct owner URL."""
    name = f"fleet_{uuid.uuid4().hex[:10]}"
    create_database(cluster, name, owner=FLEET_OWNER, template=V1_TEMPLATE)
    url = _owner_url(cluster, name)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        schema = await deployed_schema(conn)
    assert schema is not None and schema.version == 1
    saved = via(url) if via is not None else url
    await config_store.save_credentials(main, vault, user_id, parse_database_url(saved),
                                        Secret(saved))
    await config_store.update_state(main, user_id, deployment=DeploymentStatus.deploying)
    await config_store.update_state(
        main, user_id, deployment=DeploymentStatus.deployed,
        connection=ConnectionStatus.connected, content_placement="user", schema_version=1,
        instance_id=schema.instance_id)
    return url


def meta_version(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("select schema_version from byodb.byodb_meta").fetchone()
    assert row is not None
    return int(row[0])


def main_version(main_url: str, user_id: str) -> int | None:
    with psycopg.connect(main_url) as conn:
        row = conn.execute("select schema_version from user_database_config where "
                           "user_id = %s", (user_id,)).fetchone()
    return None if row is None else row[0]


async def wait_for_run(main: AsyncEngine, run_id: uuid.UUID, *statuses: str,
                       timeout_s: float = 90) -> dict[str, Any]:
    """Poll the run until its status is one of ``statuses`` (default: not running)."""
    deadline = time.monotonic() + timeout_s
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = await fleet_runs.describe_run(main, run_id, with_instances=True)
        if (run["status"] in statuses) if statuses else run["status"] != "running":
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"run never reached {statuses or 'an end'}: {run}")


async def wait_until(predicate: Any, *, timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")

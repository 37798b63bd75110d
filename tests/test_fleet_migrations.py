"""Fleet schema runs with real PostgreSQL: every user database brought to the target, with
no user waiting behind a migration, nothing done twice, unreachable instances finished
later, canaries that halt a bad run, dry runs that change nothing, and the admin API."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from byodb.content.deploy import DEPLOY_LOCK_KEY
from byodb.instances.fleet import runs as fleet_runs
from byodb.instances.fleet.jobs import FleetScheduler
from byodb.instances.fleet.options import RunOptions
from byodb.instances.fleet.records import upsert_record
from byodb.instances.fleet.schema_migration import MigrationLimits, Outcome
from byodb.maindb.embedded import PostgresCluster
from byodb.runtime import Runtime
from byodb.settings import Settings
from tests.conftest import Api, count_rows
from tests.fleet_support import (
    PROBE_STEPS,
    connected_at_v1,
    main_version,
    meta_version,
    v1_template,
    wait_for_run,
    wait_until,
)
from tests.tcp_proxy import FreezableProxy
from tests.test_pages import page

FAST = MigrationLimits(lock_timeout_s=0.3, lock_ladder_s=(0.05, 0.1, 0.2), lease_s=5.0,
                       retry_later_s=(0.3,), step_timeout_s=30, instance_deadline_s=60)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A short connect deadline: an unreachable instance is found out in about a second.
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_CONNECT_TIMEOUT=1)


@pytest.fixture(scope="session")
def template(user_server: PostgresCluster) -> Iterator[str]:
    yield v1_template(user_server)


def _runtime(api: Api, *, steps: dict[int, tuple[str, ...]] | None = PROBE_STEPS,
             target: int = 2) -> Runtime:
    """The app's runtime with the test's steps, fast limits and target injected."""
    rt: Runtime = api.app.state.runtime
    rt.migrator.steps = steps
    rt.migrator.limits = FAST
    rt.migrator.target = target
    rt.lifecycle.limits = dataclasses.replace(rt.lifecycle.limits, schema_target=target)
    return rt


def _scheduler(api: Api) -> FleetScheduler:
    return FleetScheduler(api.app.state.job_app, api.app.state.runtime.main)


async def _admin(api: Api, method: str, path: str,
                 body: dict[str, Any] | None = None) -> httpx.Response:
    return await api.client.request(method, path, json=body,
                                    headers=api.headers("root", admin=True))


def _applied(url: str) -> int:
    return count_rows(url, "select count(*) from public.fleet_step_log")


async def test_a_run_brings_every_instance_to_the_target_and_skips_current_ones(
        api: Api, main_url: str, user_server: PostgresCluster, template: str) -> None:
    rt = _runtime(api)
    urls = {user: await connected_at_v1(rt.main, rt.vault, user_server, user)
            for user in ("ann", "bob", "cai")}
    current = await connected_at_v1(rt.main, rt.vault, user_server, "dee")
    with psycopg.connect(main_url, autocommit=True) as conn:  # dee is at 2 on main's record
        conn.execute("update user_database_config set schema_version = 2 where user_id = "
                     "'dee'")
    response = await _admin(api, "POST", "/api/admin/byod/migrations", {"canary": 1})
    assert response.status_code == 202, response.text
    run_id = uuid.UUID(response.json()["id"])
    run = await wait_for_run(rt.main, run_id, "completed", "halted")
    assert run["status"] == "completed", run
    assert (run["total"], run["completed"], run["failed"], run["already_current"]) == \
        (3, 3, 0, 1)
    for user, url in urls.items():
        assert meta_version(url) == 2 and _applied(url) == 1
        assert main_version(main_url, user) == 2
        record = next(i for i in run["instances"] if i["user_id"] == user)
        assert record["status"] == "completed" and record["attempts"] == 1
    # The instance already current was decided from main: no connection, no step.
    assert meta_version(current) == 1 and _applied(current) == 0
    state = (await api.get("/api/byod", "ann")).json()
    assert state["schema_version"] == 2
    # The run as the admin API shows it, and the list of runs.
    body = (await _admin(api, "GET", f"/api/admin/byod/migrations/{run_id}")).json()
    assert {i["user_id"] for i in body["instances"]} == {"ann", "bob", "cai"}
    assert body["status"] == "completed" and body["to_version"] == 2
    listed = (await _admin(api, "GET", "/api/admin/byod/migrations")).json()
    assert [r["id"] for r in listed["runs"]] == [str(run_id)]
    assert listed["instances_by_state"] == {"completed": 3}
    # A second run finds everyone current, without a connection.
    again = await _scheduler(api).start(RunOptions(to_version=2))
    assert again is not None
    second = await wait_for_run(rt.main, again)
    assert (second["status"], second["total"], second["already_current"]) == \
        ("completed", 0, 4)


async def test_admin_migration_routes_refuse_non_admins_and_bad_input(
        api: Api, main_url: str) -> None:
    some_id = uuid.uuid4()
    for method, path, body in (
            ("POST", "/api/admin/byod/migrations", {}),
            ("GET", "/api/admin/byod/migrations", None),
            ("GET", f"/api/admin/byod/migrations/{some_id}", None),
            ("POST", f"/api/admin/byod/migrations/{some_id}/retry-failed", None)):
        response = await api.request(method, path, "mallory", json=body)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    for body, field in (({"to_version": 99}, "to_version"), ({"to_version": 0}, "to_version"),
                        ({"canary": -1}, "canary"), ({"dry_run": "maybe"}, "dry_run"),
                        ({"target": 2}, "target")):
        response = await _admin(api, "POST", "/api/admin/byod/migrations", body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text
    missing = await _admin(api, "GET", f"/api/admin/byod/migrations/{some_id}")
    assert missing.status_code == 404
    assert count_rows(main_url, "select count(*) from migrations") == 0


async def test_a_conflicting_lock_makes_the_step_retry_without_blocking_the_users_reads(
        api: Api, main_url: str, user_server: PostgresCluster, template: str) -> None:
    rt = _runtime(api)
    url = await connected_at_v1(rt.main, rt.vault, user_server, "lou")
    # The user's own transaction reads messages and stays open: the step's ALTER TABLE
    # messages cannot get its lock.
    blocker = psycopg.connect(url)
    blocker.execute("select count(*) from byodb.messages").fetchone()
    run_id = await _scheduler(api).start(RunOptions(to_version=2))
    assert run_id is not None
    # While the migration keeps trying, the user's reads go through: a waiting ALTER gives
    # up within its short lock_timeout instead of queueing everyone behind it.
    with psycopg.connect(url, autocommit=True) as reader:
        reader.execute("set statement_timeout = '3s'")
        for _ in range(10):
            reader.execute("select count(*) from byodb.messages").fetchone()
            await asyncio.sleep(0.1)

    seen: list[dict[str, object]] = []

    async def tried() -> bool:
        run = await fleet_runs.describe_run(rt.main, run_id, with_instances=True)
        seen[:] = run["instances"]
        # The first attempt gave up on the lock (nothing applied) and the job came back.
        return bool(seen[0]["attempts"] >= 2)  # type: ignore[operator]
    try:
        await wait_until(tried, what="the step was retried")
    except AssertionError:
        raise AssertionError(f"the step was never retried: {seen}") from None
    assert meta_version(url) == 1 and _applied(url) == 0  # nothing half applied meanwhile
    blocker.commit()
    blocker.close()
    await wait_for_run(rt.main, run_id, "completed")
    assert meta_version(url) == 2 and _applied(url) == 1


async def test_an_unreachable_instance_stays_pending_and_completes_when_it_is_back(
        api: Api, main_url: str, user_server: PostgresCluster, template: str) -> None:
    rt = _runtime(api)
    other = await connected_at_v1(rt.main, rt.vault, user_server, "oli")
    with FreezableProxy.for_url(user_server.url()).start() as proxy:
        # una's saved URL goes through the proxy: a database that stops answering.
        direct = await connected_at_v1(rt.main, rt.vault, user_server, "una",
                                       via=proxy.url_for)
        proxy.freeze()
        run_id = await _scheduler(api).start(RunOptions(to_version=2))
        assert run_id is not None
        run = await wait_for_run(rt.main, run_id, "incomplete")
        una = next(i for i in run["instances"] if i["user_id"] == "una")
        assert una["status"] == "pending" and una["error_code"] in ("timeout", "unreachable")
        assert meta_version(direct) == 1 and meta_version(other) == 2
        proxy.thaw()
        run = await wait_for_run(rt.main, run_id, "completed")
    assert meta_version(direct) == 2 and _applied(direct) == 1
    assert main_version(main_url, "una") == 2


async def test_a_failing_canary_halts_the_run_and_retry_failed_resumes_it(
        api: Api, main_url: str, user_server: PostgresCluster, template: str) -> None:
    rt = _runtime(api)
    urls = [await connected_at_v1(rt.main, rt.vault, user_server, f"can{n}")
            for n in range(4)]
    for url in urls:  # every database has what the step creates: the step fails
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table byodb.fleet_probe (id integer)")
    response = await _admin(api, "POST", "/api/admin/byod/migrations", {"canary": 1})
    run_id = uuid.UUID(response.json()["id"])
    run = await wait_for_run(rt.main, run_id, "halted")
    assert "canary" in run["halted_reason"]
    failed = [i for i in run["instances"] if i["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["step"] == 2
    assert failed[0]["error_code"] == "step_failed" and "42P07" in failed[0]["error"]
    assert "fleet_probe" not in failed[0]["error"] and "postgres" not in failed[0]["error"]
    untouched = [i for i in run["instances"] if i["status"] == "pending"]
    assert len(untouched) == 3 and all(i["attempts"] == 0 for i in untouched)
    assert all(meta_version(url) == 1 for url in urls)
    # The operator fixes the cause, then retries the failed instance: the run resumes.
    for url in urls:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("drop table byodb.fleet_probe")
    retried = await _admin(api, "POST", f"/api/admin/byod/migrations/{run_id}/retry-failed")
    assert retried.status_code == 202 and retried.json()["retried"] == 1
    run = await wait_for_run(rt.main, run_id, "completed")
    assert run["completed"] == 4 and all(meta_version(url) == 2 for url in urls)


async def test_a_dry_run_reports_what_would_fail_and_changes_nothing(
        api: Api, main_url: str, user_server: PostgresCluster, template: str) -> None:
    rt = _runtime(api)
    good = await connected_at_v1(rt.main, rt.vault, user_server, "dry1")
    bad = await connected_at_v1(rt.main, rt.vault, user_server, "dry2")
    with psycopg.connect(bad, autocommit=True) as conn:
        conn.execute("create table byodb.fleet_probe (id integer)")
    response = await _admin(api, "POST", "/api/admin/byod/migrations",
                            {"dry_run": True, "canary": 0})
    run = await wait_for_run(rt.main, uuid.UUID(response.json()["id"]))
    assert run["dry_run"] is True
    by_user = {i["user_id"]: i for i in run["instances"]}
    assert by_user["dry1"]["status"] == "completed"
    assert by_user["dry2"]["status"] == "failed" and by_user["dry2"]["step"] == 2
    for url in (good, bad):
        assert meta_version(url) == 1 and _applied(url) == 0
        assert count_rows(url, "select count(*) from information_schema.columns where "
                          "table_name = 'messages' and column_name = 'fleet_probe'") == 0
    assert main_version(main_url, "dry1") == 1 and main_version(main_url, "dry2") == 1
    assert count_rows(main_url, "select count(*) from byod_migrations where not dry_run") == 0


async def test_two_runners_never_migrate_one_database_at_once(
        api: Api, main_url: str, user_server: PostgresCluster, template: str) -> None:
    rt = _runtime(api)
    url = await connected_at_v1(rt.main, rt.vault, user_server, "two")
    config = await rt.lifecycle.state("two")
    assert config is not None
    async with rt.main.begin() as conn:
        record = await upsert_record(conn, user_id="two", from_version=1, to_version=2,
                                     dry_run=False, migration_id=None, host=config.host)
    # Two workers given the same instance at the same moment: one lease, one migration.
    first, second = await asyncio.gather(rt.migrator.run(record.id, "worker-a"),
                                         rt.migrator.run(record.id, "worker-b"))
    outcomes = sorted([first.outcome, second.outcome])
    assert Outcome.completed in outcomes
    assert _applied(url) == 1 and meta_version(url) == 2
    # Another machine (another main, no shared lease) is kept out by the advisory lock
    # in the user's database itself.
    url2 = await connected_at_v1(rt.main, rt.vault, user_server, "tri")
    async with rt.main.begin() as conn:
        record2 = await upsert_record(conn, user_id="tri", from_version=1, to_version=2,
                                      dry_run=False, migration_id=None, host=config.host)
    with psycopg.connect(url2, autocommit=True) as other_machine:
        other_machine.execute("select pg_advisory_lock(%s)", (DEPLOY_LOCK_KEY,))
        busy = await rt.migrator.run(record2.id, "worker-c")
        assert busy.outcome is Outcome.pending and busy.code == "busy"
        assert meta_version(url2) == 1 and _applied(url2) == 0
    done = await rt.migrator.run(record2.id, "worker-c")
    assert done.outcome is Outcome.completed and _applied(url2) == 1


async def test_a_request_below_the_supported_minimum_updates_or_answers_byod_updating(
        api: Api, main_url: str, user_server: PostgresCluster, template: str) -> None:
    rt = _runtime(api)
    url = await connected_at_v1(rt.main, rt.vault, user_server, "gus")
    rt.router.schema_floor = 2  # this code "no longer supports" version 1
    rt.router.gate_wait_s = 1.0
    rt.router.invalidate("gus")
    # The migration cannot run (another machine holds the database's migration lock):
    # the request is answered 503 byod_updating with Retry-After, the database unused.
    with psycopg.connect(url, autocommit=True) as other_machine:
        other_machine.execute("select pg_advisory_lock(%s)", (DEPLOY_LOCK_KEY,))
        response = await api.get("/api/conversations", "gus")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "byod_updating"
        assert response.headers["Retry-After"]
        page = await api.get("/settings/database", "gus")
        assert "data-schema-updating" in page.text
    # Once it can run, the next request waits for it briefly and is served.
    rt.router.gate_wait_s = 10.0

    async def served() -> bool:
        return (await api.get("/api/conversations", "gus")).status_code == 200
    await wait_until(served, what="the request was served after the migration")
    assert meta_version(url) == 2 and main_version(main_url, "gus") == 2


def test_slots_keep_the_global_and_per_host_limits_and_spread_the_work() -> None:
    hosts = [(uuid.uuid4(), "a.example") for _ in range(50)] + \
        [(uuid.uuid4(), "b.example") for _ in range(30)] + \
        [(uuid.uuid4(), None) for _ in range(5)]
    planned = fleet_runs.assign_slots(hosts, concurrency=8, per_host=3)
    assert sorted(p.record_id for p in planned) == sorted(r for r, _ in hosts)
    host_of = dict(hosts)
    slots_of: dict[str | None, set[int]] = {}
    for job in planned:
        slots_of.setdefault(host_of[job.record_id], set()).add(job.slot)
    assert all(len(slots) <= 3 for slots in slots_of.values())
    assert {job.slot for job in planned} <= set(range(8))
    # Three hosts of three slots each fit in eight slots with at most one shared.
    assert len(slots_of["a.example"] & slots_of["b.example"]) == 0


async def test_the_dashboard_offers_schema_migrations_with_a_live_panel(api: Api) -> None:
    response = await page(api, "/admin/byod", "root", admin=True)
    assert response.status_code == 200
    button = re.search(r'<button[^>]*data-fleet-action="migrate_all"[^>]*>', response.text)
    assert button is not None and "disabled" not in button.group(0)
    assert "data-rollout-retry" in response.text and "data-rollout-errors" in response.text
    assert "/static/js/admin-migrations.js" in response.text
    script = await api.client.get("/static/js/admin-migrations.js")
    assert script.status_code == 200 and "retry-failed" in script.text

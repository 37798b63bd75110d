"""Fleet schema runs from the outside: ``byodb migrate-all`` and ``byodb migrations status``
(JSON summary, exit codes, a bad option changing nothing), a worker killed with SIGKILL in
the middle of a step, and the automatic rollout when the app starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from byodb.instances.fleet import runs as fleet_runs
from byodb.instances.fleet.jobs import FleetScheduler
from byodb.instances.fleet.options import RunOptions
from byodb.jobs.queue import bound_job_app, requeue_stalled_jobs
from byodb.maindb.embedded import PostgresCluster
from byodb.runtime import Runtime, build_runtime
from byodb.settings import Settings
from byodb.web.app import create_app
from tests.cli_support import CliResult, arun_cli
from tests.conftest import count_rows
from tests.fleet_support import (
    connected_at_v1,
    main_version,
    meta_version,
    v1_template,
    wait_for_run,
    wait_until,
)

BYODB = [sys.executable, "-m", "byodb.cli.main"]
SUMMARY_KEYS = {"run_id", "to_version", "total", "completed", "failed", "pending",
                "already_current", "seconds", "dry_run", "status", "halted_reason"}


@pytest.fixture(scope="session")
def template(user_server: PostgresCluster) -> Iterator[str]:
    yield v1_template(user_server)


@pytest.fixture
async def runtime(settings: Settings, main_url: str) -> AsyncIterator[Runtime]:
    rt = build_runtime(settings, main_url)
    yield rt
    await rt.close()


def _env(settings: Settings, main_url: str, *, inherited: bool = True) -> dict[str, str]:
    """The operator's environment: on top of this process's for a process of its own."""
    return {**(os.environ if inherited else {}), "BYODB_DATABASE_URL": main_url,
            "BYODB_DATA_DIR": str(settings.data_dir), "BYODB_ALLOW_PRIVATE_HOSTS": "1",
            "BYODB_AUTO_MIGRATE": "0"}


async def _byodb(settings: Settings, main_url: str, *args: str) -> CliResult:
    return await arun_cli(*args, env=_env(settings, main_url, inherited=False))


def _summary(result: CliResult) -> dict[str, object]:
    parsed: dict[str, object] = result.last_json()
    return parsed


def _poison(url: str) -> None:
    """Give the database what version 2 adds, so its step fails (a permanent error)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("alter table byodb.messages add column embedding_model text")


async def test_migrate_all_prints_its_summary_and_exits_by_what_it_reached(
        settings: Settings, main_url: str, runtime: Runtime, user_server: PostgresCluster,
        template: str) -> None:
    urls = {user: await connected_at_v1(runtime.main, runtime.vault, user_server, user)
            for user in ("cl1", "cl2", "cl3")}
    _poison(urls["cl3"])

    # A bad option: a clear error, exit 2, no run recorded.
    bad = await _byodb(settings, main_url, "migrate-all", "--max-failure-ratio", "2", "--json")
    assert bad.exit_code == 2, bad.stderr
    assert "error: max_failure_ratio must be between 0 and 1" in bad.stderr
    too_new = await _byodb(settings, main_url, "migrate-all", "--to", "99")
    assert too_new.exit_code == 2 and "to_version must be between" in too_new.stderr
    assert count_rows(main_url, "select count(*) from migrations") == 0

    # No worker is running: the command does the work itself. One instance fails.
    first = await _byodb(settings, main_url, "migrate-all", "--json", "--max-failure-ratio", "1")
    assert first.exit_code == 1, first.stderr
    summary = _summary(first)
    assert set(summary) == SUMMARY_KEYS
    assert (summary["to_version"], summary["total"], summary["failed"],
            summary["already_current"]) == (2, 3, 1, 0)
    # The two healthy ones are migrated, or (a connect or lock timeout on a busy machine)
    # left pending for the next run: a transient error is never called a failure.
    pending = summary["pending"]
    assert summary["completed"] + pending == 2 and pending in (0, 1), summary
    assert sorted(meta_version(urls[u]) for u in ("cl1", "cl2")) == [1] * pending + \
        [2] * (2 - pending)
    assert meta_version(urls["cl3"]) == 1

    # The cause fixed, the next run tries the failed one again and exits 0.
    with psycopg.connect(urls["cl3"], autocommit=True) as conn:
        conn.execute("alter table byodb.messages drop column embedding_model")
    second = await _byodb(settings, main_url, "migrate-all", "--json")
    assert second.exit_code == 0, second.stdout
    assert (_summary(second)["completed"], _summary(second)["already_current"]) == \
        (1 + pending, 2 - pending)
    assert all(meta_version(url) == 2 for url in urls.values())
    assert main_version(main_url, "cl3") == 2

    # Nothing left to do: decided from main's records, exit 0.
    third = _summary(await _byodb(settings, main_url, "migrate-all", "--json"))
    assert (third["total"], third["already_current"]) == (0, 3)
    # Without --json: a progress bar (stderr) and a summary line for people (stdout).
    plain = await _byodb(settings, main_url, "migrate-all")
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout.strip().startswith("migrated 0 to v2, 3 already current (skipped), "
                                           "0 failed, 0 pending, in ")

    status = await _byodb(settings, main_url, "migrations", "status", "--json")
    assert status.exit_code == 0, status.stderr
    report = _summary(status)
    runs = report["runs"]
    assert isinstance(runs, list) and len(runs) == 4
    assert [r["status"] for r in runs] == ["completed", "completed", "completed",
                                           "incomplete"]
    assert report["instances_by_state"] == {"completed": 3}


def _start_worker(settings: Settings, main_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*BYODB, "worker"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True,
                            env=_env(settings, main_url))


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


async def test_a_worker_killed_mid_step_loses_nothing_and_each_instance_completes_once(
        settings: Settings, main_url: str, runtime: Runtime, user_server: PostgresCluster,
        template: str) -> None:
    urls = {user: await connected_at_v1(runtime.main, runtime.vault, user_server, user)
            for user in ("k1", "k2", "k3")}
    # k3's own open transaction keeps its messages table busy: the worker will be in the
    # middle of k3's step (retrying its lock) when it is killed.
    blocker = psycopg.connect(urls["k3"])
    blocker.execute("select count(*) from byodb.messages").fetchone()
    async with bound_job_app(main_url) as app:
        run_id = await FleetScheduler(app, runtime.main).start(RunOptions(to_version=2))
        assert run_id is not None
        worker = _start_worker(settings, main_url)
        try:
            async def mid_step() -> bool:
                run = await fleet_runs.describe_run(runtime.main, run_id, with_instances=True)
                by = {i["user_id"]: i for i in run["instances"]}
                return (by["k1"]["status"] == by["k2"]["status"] == "completed"
                        and by["k3"]["status"] == "running" and by["k3"]["step"] == 2)
            await wait_until(mid_step, timeout_s=120, what="k3 in the middle of its step")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            _stop(worker)
        # The step's transaction died with the worker's connection: nothing half done.
        blocker.commit()
        blocker.close()
        assert meta_version(urls["k3"]) == 1
        # The dead worker's heartbeat is old by now (simulated); the sweep retries its job.
        with psycopg.connect(main_url, autocommit=True) as conn:
            conn.execute("update procrastinate_workers set last_heartbeat = now() - "
                         "interval '1 hour'")
        assert await requeue_stalled_jobs(app.job_manager, runtime.main) >= 1
        second = _start_worker(settings, main_url)
        try:
            run = await wait_for_run(runtime.main, run_id, "completed", timeout_s=120)
        finally:
            _stop(second)
    by = {i["user_id"]: i for i in run["instances"]}
    assert all(meta_version(url) == 2 for url in urls.values())
    # k1 and k2 ran once and were not touched again; k3 was tried more than once (the
    # killed try, maybe an earlier one that gave up on the lock, and the one that
    # completed it) and its step committed once: a second application would have failed.
    assert (by["k1"]["attempts"], by["k2"]["attempts"]) == (1, 1)
    assert by["k3"]["attempts"] >= 2 and by["k3"]["error"] is None
    assert run["completed"] == 3 and run["failed"] == 0


async def test_the_app_starts_one_rollout_by_itself_unless_told_not_to(
        settings: Settings, main_url: str, runtime: Runtime, user_server: PostgresCluster,
        template: str) -> None:
    url = await connected_at_v1(runtime.main, runtime.vault, user_server, "auto1")
    off = settings.model_copy(update={"auto_migrate": False})
    quiet = create_app(off, main_url=main_url, migrate=False, run_worker=False)
    async with quiet.router.lifespan_context(quiet):
        pass
    assert count_rows(main_url, "select count(*) from migrations") == 0
    for _ in range(2):  # two replicas starting: one automatic run
        app = create_app(settings, main_url=main_url, migrate=False)
        async with app.router.lifespan_context(app):
            runs = await fleet_runs.latest_runs(runtime.main)
            assert len(runs) == 1
            run = await wait_for_run(runtime.main, uuid.UUID(runs[0]["id"]), "completed")
    assert run["started_by"] == "auto" and run["completed"] == 1 and run["canary"] == 5
    assert meta_version(url) == 2

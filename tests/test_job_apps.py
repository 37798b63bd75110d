"""The job apps of a process: two of them (a server and an operator's command, two apps in
a test run) each reach only their own main database, periodic jobs included; an app that
stops stops every one of its workers in order."""

from __future__ import annotations

import asyncio

import psycopg

from byodb.jobs.queue import WORKER_CONCURRENCY, bound_job_app, run_workers
from byodb.maindb.embedded import PostgresCluster
from byodb.runtime import build_runtime
from byodb.settings import Settings
from tests.conftest import _db_name, create_database, running_app
from tests.fleet_support import wait_until


def jobs_in(url: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(url) as conn:
        return [(row[0], row[1]) for row in conn.execute(
            "select task_name, args->>'user_id' from procrastinate_jobs order by id")]


async def test_each_job_app_defers_into_its_own_main_database(
        main_server: PostgresCluster, main_template: str, main_url: str) -> None:
    other = _db_name("main")
    create_database(main_server, other, template=main_template)
    other_url = main_server.url(other)
    async with bound_job_app(main_url) as first:
        async with bound_job_app(other_url) as second:
            for app, user in ((first, "ann"), (second, "bob")):
                await app.configure_task("byod:provision").defer_async(
                    user_id=user, credential_version=1)
                # The way procrastinate's periodic deferrer queues a tick: through the
                # app the task object belongs to.
                stalled = next(p.task for p in app.periodic_registry.periodic_tasks.values()
                               if p.task.name == "byodb.retry_stalled_jobs")
                await stalled.configure().defer_async(timestamp=1)
        # The inner app is gone; the outer one still defers into its own database.
        await first.configure_task("byod:provision").defer_async(user_id="cy",
                                                                 credential_version=1)
    assert jobs_in(main_url) == [("byod:provision", "ann"),
                                 ("byodb.retry_stalled_jobs", None),
                                 ("byod:provision", "cy")]
    assert jobs_in(other_url) == [("byod:provision", "bob"),
                                  ("byodb.retry_stalled_jobs", None)]


def workers_signed_in(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from procrastinate_workers").fetchone()
    return int(row[0]) if row else 0


async def test_an_app_that_stops_lets_every_worker_finish_and_sign_off(
        settings: Settings, main_url: str) -> None:
    async with running_app(settings, main_url):
        async def all_started() -> bool:
            return workers_signed_in(main_url) == len(WORKER_CONCURRENCY)
        await wait_until(all_started, what="every queue's worker started")
    # Each worker ended its own shutdown: its jobs finished and it unregistered. (A worker
    # cut short would stay registered, its jobs left running after the app closed.)
    assert workers_signed_in(main_url) == 0
    with psycopg.connect(main_url) as conn:
        assert conn.execute("select count(*) from procrastinate_jobs"
                            " where status = 'doing'").fetchone() == (0,)


async def test_workers_stopped_just_as_they_start_still_stop(settings: Settings,
                                                             main_url: str) -> None:
    # Stopped at different moments of their start (registering on main, starting their
    # loops): each time every worker finishes stopping and none stays registered. (A
    # cancellation landing while a worker registered itself used to be lost, and the app
    # then never finished stopping.)
    runtime = build_runtime(settings, main_url)
    try:
        async with bound_job_app(main_url) as app:
            for step in range(30):
                serving = asyncio.create_task(run_workers(app, runtime.lifecycle, name="t",
                                                          main=runtime.main,
                                                          migrator=runtime.migrator))
                await asyncio.sleep(step * 0.01)
                serving.cancel()
                done, _ = await asyncio.wait([serving], timeout=60)
                assert done, f"workers stopped {step * 10} ms after their start never stopped"
                assert workers_signed_in(main_url) == 0
    finally:
        await runtime.close()

"""A worker that dies mid-deployment does not leave the user stuck: its job is retried and,
every job being idempotent, completes."""

from __future__ import annotations

import asyncio
import json

import psycopg

from byodb.instances.connection.guard import parse_database_url
from byodb.instances.lifecycle import config_store
from byodb.instances.lifecycle.states import DeploymentStatus
from byodb.jobs.queue import requeue_stalled_jobs
from byodb.vault import Secret
from tests.conftest import Api, count_rows


async def test_job_of_a_dead_worker_is_retried_and_completes(api: Api, main_url: str,
                                                            user_db_url: str) -> None:
    await api.post("/api/conversations", "xia", json={"title": "survives the crash"})
    rt = api.app.state.runtime
    # The state a crash leaves behind: credentials saved, deployment "running", and the
    # job held by a worker that stopped sending heartbeats long ago.
    saved = await config_store.save_credentials(rt.main, rt.vault, "xia",
                                                parse_database_url(user_db_url),
                                                Secret(user_db_url))
    await config_store.update_state(rt.main, "xia", deployment=DeploymentStatus.deploying,
                                    deployment_progress="Creating table byodb.messages")
    with psycopg.connect(main_url, autocommit=True) as conn:
        dead = conn.execute("insert into procrastinate_workers (last_heartbeat) values "
                            "(now() - interval '1 hour') returning id").fetchone()
        assert dead is not None
        # Written straight into "doing" so the live worker cannot take it first.
        conn.execute(
            "insert into procrastinate_jobs (queue_name, task_name, lock, args, status, "
            "worker_id) values ('byod_connect', 'byod:provision', 'user-database:xia', "
            "%s, 'doing', %s)",
            (json.dumps({"user_id": "xia", "credential_version": saved.credential_version}),
             dead[0]))
    await asyncio.sleep(1.5)  # the live worker had its chance: a job in "doing" is not its
    # The periodic task (every minute) may have put it back already; otherwise we do now.
    requeued = await requeue_stalled_jobs(api.app.state.job_app.job_manager, rt.main)
    with psycopg.connect(main_url) as conn:
        retried = conn.execute("select count(*) from procrastinate_events where type = "
                               "'deferred_for_retry'").fetchone()
    assert requeued >= 1 or (retried is not None and retried[0] >= 1)
    state = await api.wait_for_state("xia", "connected", "error")
    assert state["connection_status"] == "connected"
    assert count_rows(user_db_url, "select count(*) from byodb.conversations where user_id = "
                      "%s", "xia") == 1
    assert count_rows(main_url, "select count(*) from byodb.conversations where user_id = %s",
                      "xia") == 0


async def test_two_sweeps_at_once_retry_a_stalled_job_once(api: Api, main_url: str) -> None:
    rt = api.app.state.runtime
    with psycopg.connect(main_url, autocommit=True) as conn:
        dead = conn.execute("insert into procrastinate_workers (last_heartbeat) values "
                            "(now() - interval '1 hour') returning id").fetchone()
        assert dead is not None
        job = conn.execute(
            "insert into procrastinate_jobs (queue_name, task_name, lock, args, status, "
            "worker_id) values ('byod_connect', 'byod:provision', 'user-database:nobody', "
            "%s, 'doing', %s) returning id",
            (json.dumps({"user_id": "nobody", "credential_version": 1}), dead[0])).fetchone()
        assert job is not None
    manager = api.app.state.job_app.job_manager
    requeued = await asyncio.gather(*(requeue_stalled_jobs(manager, rt.main)
                                      for _ in range(4)))
    assert sum(requeued) == 1
    # Put back for a retry once (the app's own worker may already have run it since, which
    # counts another attempt: the retries are what is counted).
    with psycopg.connect(main_url) as conn:
        retried = conn.execute("select count(*) from procrastinate_events where job_id = %s "
                               "and type = 'deferred_for_retry'", (job[0],)).fetchone()
    assert retried == (1,)

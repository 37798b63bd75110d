"""The job queue: a procrastinate app on the main database, and the tasks it runs.

Tasks find the process's :class:`~byodb.runtime.Runtime` through :func:`use_runtime`, set
once by whoever runs the worker (``byodb serve`` inline, or ``byodb worker``). Payloads carry
ids only — never credentials or content (DESIGN.md §1, §6).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.maindb.urls import libpq_url
from byodb.runtime import Runtime

log = logging.getLogger(__name__)

_runtime: Runtime | None = None


def use_runtime(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def current_runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("no runtime: start the worker through byodb serve or byodb worker")
    return _runtime


# Tasks register on this app; a process binds it to its main database with
# :func:`bound_job_app` (one bound job app per process at a time).
job_app = procrastinate.App(connector=procrastinate.PsycopgConnector())


@contextlib.asynccontextmanager
async def bound_job_app(main_url: str) -> AsyncIterator[procrastinate.App]:
    """The job app connected to ``main_url``, open for deferring (and running a worker)."""
    connector = procrastinate.PsycopgConnector(conninfo=libpq_url(main_url), min_size=1,
                                               max_size=4)
    with job_app.replace_connector(connector) as app:
        async with app.open_async():
            yield app


@job_app.task(name="byodb.provision_user_database", queue="byod", retry=0)
async def provision_user_database_job(user_id: str, credential_version: int) -> None:
    from byodb.instances.provisioning import provision_user_database

    await provision_user_database(current_runtime(), user_id, credential_version)


@job_app.task(name="byodb.disconnect_user_database", queue="byod", retry=0)
async def disconnect_user_database_job(user_id: str, credential_version: int, mode: str) -> None:
    from byodb.instances.disconnect import DisconnectMode, run_disconnect

    await run_disconnect(current_runtime(), user_id, credential_version, DisconnectMode(mode))


async def enqueue_disconnect(app: procrastinate.App, user_id: str, credential_version: int,
                             mode: str) -> None:
    """Queue a migrate-back or delete of a user's data; serialised with provisioning."""
    with contextlib.suppress(AlreadyEnqueued):
        await app.configure_task(
            "byodb.disconnect_user_database",
            lock=f"provision:{user_id}",
            queueing_lock=f"disconnect:{user_id}:{credential_version}",
        ).defer_async(user_id=user_id, credential_version=credential_version, mode=mode)


@job_app.periodic(cron="* * * * *", periodic_id="byodb-stalled-jobs")
@job_app.task(name="byodb.retry_stalled_jobs", queue="byod", queueing_lock="stalled-jobs",
              pass_context=True)
async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> int:
    """Put back in the queue the jobs of workers that died mid-way (no heartbeat).

    Every byodb job is idempotent (deploy is a no-op once done, moves resume), so running
    an interrupted one again completes it instead of leaving a user stuck in ``deploying``.
    """
    return await requeue_stalled_jobs(context.app.job_manager)


async def requeue_stalled_jobs(manager: procrastinate.manager.JobManager) -> int:
    """Retry every byod job whose worker stopped sending heartbeats."""
    stalled = list(await manager.get_stalled_jobs(queue="byod"))
    for job in stalled:
        log.warning("retrying stalled job %s (%s)", job.id, job.task_name)
        await manager.retry_job(job)
    return len(stalled)


async def enqueue_provisioning(app: procrastinate.App, user_id: str,
                               credential_version: int) -> None:
    """Queue the deploy+move of a user's database; one at a time per user."""
    with contextlib.suppress(AlreadyEnqueued):
        await app.configure_task(
            "byodb.provision_user_database",
            lock=f"provision:{user_id}",
            queueing_lock=f"provision:{user_id}:{credential_version}",
        ).defer_async(user_id=user_id, credential_version=credential_version)


async def ensure_job_schema(main: AsyncEngine, app: procrastinate.App) -> None:
    """Apply procrastinate's schema on main once (it is not re-runnable)."""
    async with main.connect() as conn:
        present = (await conn.execute(
            text("select to_regclass('public.procrastinate_jobs') is not null"))).scalar()
    if not present:
        await app.schema_manager.apply_schema_async()

"""The job queue: procrastinate apps on the main database (a new one per binding,
:func:`new_job_app`), assembled from the blueprints defined next to what they run
(``byodb.instances.lifecycle.jobs`` and its neighbours), and the workers that serve them.

Workers get their dependencies through the job context (``additional_context``), never a
module global. Each kind of work has its own queue and its own worker, so stuck work of a
few users cannot delay the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import procrastinate
from procrastinate.worker import Worker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.instances.fleet import jobs as fleet_jobs
from byodb.instances.fleet.schema_migration import SchemaMigrator
from byodb.instances.health import jobs as health_jobs
from byodb.instances.lifecycle import jobs as instance_jobs
from byodb.instances.lifecycle.owner import InstanceLifecycle
from byodb.jobs import reembed
from byodb.maindb.urls import libpq_url
from byodb.services.reembed import Reembedder

log = logging.getLogger(__name__)

MAINTENANCE_QUEUE = "byod_maintenance"
STALLED_JOBS_LOCK_KEY = 0x6279_6F64_6A6F  # "byodjo": one requeue of stalled jobs at a time
# Queue → how many of its jobs one process runs at once. The jobs wait on other servers
# almost all the time, so many run at once: a few users' stuck connects (each ends at its
# deadline) leave room for everyone else's.
WORKER_CONCURRENCY: dict[str, int] = {
    instance_jobs.CONNECT_QUEUE: 16,
    instance_jobs.MOVE_QUEUE: 2,
    # A scheduled tick and an operator's "check all" may meet; the sweep lock lets one run.
    health_jobs.HEALTH_QUEUE: 2,
    MAINTENANCE_QUEUE: 1,
    # Fleet schema runs: how many instances this process migrates at once (about what the
    # main pool serves without opening and closing overflow connections); the run's own
    # limits (global and per host) hold across every process (instances/fleet/jobs.py).
    fleet_jobs.MIGRATE_QUEUE: 20,
    # Re-embedding after a model change: CPU work in this process (the embedding executor
    # has two threads), so one user at a time; each run ends after its time budget.
    reembed.REEMBED_QUEUE: 1,
}


async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> int:
    """Put back in the queue the jobs of workers that died mid-way (no heartbeat).

    Every byodb job is idempotent (deploy is a no-op once done, moves resume), so running
    an interrupted one again completes it instead of leaving a user stuck in ``deploying``.
    """
    return await requeue_stalled_jobs(
        context.app.job_manager, instance_jobs.in_context(context, "main", AsyncEngine,
                                                          "main database"))


def new_job_app(connector: procrastinate.PsycopgConnector) -> procrastinate.App:
    """A job app with every byodb task, on ``connector``.

    Each call makes its own app and its own task objects: a procrastinate task belongs to
    the app it was registered on (its periodic jobs are deferred through that app's
    connector), so two apps in one process — the server and an operator's command, or two
    test apps — each reach only their own main database. (One shared app whose connector is
    swapped would send a worker's periodic jobs to whichever database was bound last.)
    """
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(instance_jobs.blueprint(), namespace=instance_jobs.NAMESPACE)
    app.add_tasks_from(fleet_jobs.blueprint(), namespace=instance_jobs.NAMESPACE)
    app.add_tasks_from(health_jobs.blueprint(), namespace=health_jobs.NAMESPACE)
    app.add_tasks_from(reembed.blueprint(), namespace=reembed.NAMESPACE)
    app.periodic(cron="* * * * *", periodic_id="byodb-stalled-jobs")(
        app.task(name="byodb.retry_stalled_jobs", queue=MAINTENANCE_QUEUE,
                 queueing_lock="stalled-jobs", pass_context=True)(retry_stalled_jobs))
    return app


@contextlib.asynccontextmanager
async def bound_job_app(main_url: str) -> AsyncIterator[procrastinate.App]:
    """A job app connected to ``main_url``, open for deferring (and running a worker)."""
    # Each worker keeps a connection LISTENing for new jobs; fetching, finishing and
    # deferring jobs need more on top, so the pool grows with the number of queues.
    connector = procrastinate.PsycopgConnector(conninfo=libpq_url(main_url), min_size=1,
                                               max_size=2 * len(WORKER_CONCURRENCY) + 4)
    app = new_job_app(connector)
    async with app.open_async():
        yield app


async def requeue_stalled_jobs(manager: procrastinate.manager.JobManager,
                               main: AsyncEngine) -> int:
    """Retry every byod job whose worker stopped sending heartbeats.

    Callers take turns (an advisory lock on main): two that read the same stalled job at
    once would both retry it, the second putting it back in the queue while a live worker
    already runs it, and one user's provisioning would then run twice at the same time.
    """
    async with main.begin() as turn:
        await turn.execute(text("select pg_advisory_xact_lock(:key)"),
                           {"key": STALLED_JOBS_LOCK_KEY})
        stalled: list[procrastinate.jobs.Job] = []
        for queue in WORKER_CONCURRENCY:
            stalled.extend(await manager.get_stalled_jobs(queue=queue))
        for job in stalled:
            log.warning("retrying stalled job %s (%s)", job.id, job.task_name)
            await manager.retry_job(job)
    return len(stalled)


async def run_workers(app: procrastinate.App, lifecycle: InstanceLifecycle, *,
                      main: AsyncEngine, migrator: SchemaMigrator, name: str,
                      health: health_jobs.HealthContext | None = None,
                      reembedder: Reembedder | None = None) -> None:
    """Serve every queue, each with a worker of its own, until cancelled (see
    :func:`run_until_stopped`)."""
    await run_until_stopped([
        queue_worker(app, queue, concurrency=concurrency, name=f"{name}-{queue}",
                     context={"main": main, "lifecycle": lifecycle, "fleet": migrator,
                              "health": health,
                              "reembed": reembedder})
        for queue, concurrency in WORKER_CONCURRENCY.items()],
        on_stop=None if health is None else health.stopping.set)


def queue_worker(app: procrastinate.App, queue: str, *, concurrency: int, name: str,
                 context: dict[str, object], polling_s: float = 1.0) -> Worker:
    """A worker for one queue inside this process: it waits for jobs, leaves signals to the
    process, and hands its tasks ``context``; run it with :func:`run_until_stopped`."""
    return Worker(app=app, queues=[queue], concurrency=concurrency, wait=True,
                  install_signal_handlers=False, name=name,
                  fetch_job_polling_interval=polling_s, additional_context=context)


async def run_until_stopped(workers: list[Worker],
                            on_stop: Callable[[], None] | None = None) -> None:
    """Run ``workers`` until this is cancelled or one of them ends, then stop them all and
    return only once every one has finished its shutdown (its running jobs ended, itself
    unregistered): a worker left running would keep taking jobs after its runtime closed.
    A crashed worker's error is raised once the others have stopped.

    Workers are stopped with :meth:`Worker.stop`, never cancelled: a cancellation that
    lands while a worker registers itself on main can be swallowed on the way, and that
    worker then never stops; a second one cuts a worker's shutdown short and leaves its
    running jobs behind. ``stop`` is asked again (soon at first, then up to every second),
    because a worker that had not started yet clears a stop request when it starts; asking
    again costs nothing once a worker's stop is under way.
    """
    # (procrastinate's Worker is not annotated.)
    runs = [asyncio.create_task(worker.run(),  # type: ignore[no-untyped-call]
                                name=f"worker {worker.worker_name}")
            for worker in workers]
    try:
        await asyncio.wait(runs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if on_stop is not None:
            on_stop()  # e.g. a health tick waiting for its next sweep ends now
        pending = set(runs)
        again_s = 0.05
        while pending:
            for worker in workers:
                worker.stop()  # type: ignore[no-untyped-call]
            _, pending = await asyncio.wait(pending, timeout=again_s)
            again_s = min(again_s * 2, 1.0)
    for run in runs:
        if not run.cancelled() and (error := run.exception()) is not None:
            raise error


async def ensure_job_schema(main: AsyncEngine, app: procrastinate.App) -> None:
    """Apply procrastinate's schema on main once (it is not re-runnable)."""
    async with main.connect() as conn:
        present = (await conn.execute(
            text("select to_regclass('public.procrastinate_jobs') is not null"))).scalar()
    if not present:
        await app.schema_manager.apply_schema_async()

"""Fleet schema runs as durable jobs: a procrastinate :func:`blueprint` on its own queue
(:data:`MIGRATE_QUEUE`) and :class:`FleetScheduler`, which starts runs and queues their
instances.

Each instance is one job, so any number of ``byodb worker`` processes on any number of
machines share a run, and a job whose worker died is retried (the stalled-jobs sweep) and
completes — its step's transaction rolled back with the connection, and the version is read
again before a step, so nothing is applied twice.

Concurrency: each job carries one of the run's ``concurrency`` procrastinate *lock slots*
(a job runs only while no other job holds its slot), and one host's jobs are confined to
``per_host`` of those slots (:func:`.slots.assign_slots`). That gives a global limit and
a per-host limit across every worker without polling. A job tried again later (unreachable
instance, locks held) is queued with a lower priority, so it never holds up the slot's
other jobs while it waits for its time.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import defaultdict
from typing import Any

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.instances.fleet import runs as fleet_runs
from byodb.instances.fleet.options import RunOptions
from byodb.instances.fleet.schema_migration import Outcome, SchemaMigrator
from byodb.instances.lifecycle.jobs import NAMESPACE, in_context

log = logging.getLogger(__name__)

MIGRATE_QUEUE = "byod_migrate"
TASK = f"{NAMESPACE}:migrate_instance"
AUTO_CANARY = 5
"""The canary of an automatic rollout: this many instances first, then the rest."""
AUTO_MAX_FAILURE_RATIO = 0.1
STALE_AFTER_S = 120.0
"""A pending record untouched this long without a queued job is queued again (the tick)."""
RETRY_PRIORITY = -1

def migrator_of(context: procrastinate.JobContext) -> SchemaMigrator:
    """The process's migrator, set in the worker's context (``additional_context["fleet"]``)
    by whoever runs the worker."""
    return in_context(context, "fleet", SchemaMigrator, "schema migrator")


async def migrate_instance(context: procrastinate.JobContext, record_id: str,
                           run_id: str | None = None, slot: int | None = None) -> None:
    migrator = migrator_of(context)
    scheduler = FleetScheduler(context.app, migrator.main)
    await scheduler.run_instance(migrator, uuid.UUID(record_id),
                                 uuid.UUID(run_id) if run_id else None, slot,
                                 owner=f"job-{context.job.id}")


async def fleet_tick(context: procrastinate.JobContext, timestamp: int) -> None:
    """Once a minute: advance every active run and queue again what lost its job."""
    await FleetScheduler(context.app, migrator_of(context).main).tick()


def blueprint() -> procrastinate.Blueprint:
    """The fleet's tasks on a new blueprint (for :data:`NAMESPACE`; new per job app, as
    :func:`byodb.instances.lifecycle.jobs.blueprint` says why)."""
    tasks = procrastinate.Blueprint()
    tasks.task(name="migrate_instance", queue=MIGRATE_QUEUE, retry=0,
               pass_context=True)(migrate_instance)
    tasks.periodic(cron="* * * * *", periodic_id="byodb-fleet-migrations")(
        tasks.task(name="fleet_tick", queue=MIGRATE_QUEUE, queueing_lock="fleet-tick",
                   pass_context=True)(fleet_tick))
    return tasks


class FleetScheduler:
    """Starts runs and queues their instances' jobs on a procrastinate app that has
    :func:`blueprint` registered under :data:`NAMESPACE`."""

    def __init__(self, app: procrastinate.App, main: AsyncEngine):
        self._app = app
        self.main = main

    async def start(self, options: RunOptions) -> uuid.UUID | None:
        """Plan a run and queue its first wave; None when an automatic run of this target
        already exists."""
        run_id = await fleet_runs.create_run(self.main, options)
        if run_id is not None:
            await self.schedule_wave(run_id)
            await self._settle_empty(run_id)
        return run_id

    async def _settle_empty(self, run_id: uuid.UUID) -> None:
        # A run with nothing to do (or a wave with nothing left) settles at once.
        decision = await fleet_runs.advance(self.main, run_id)
        if decision.next_wave:
            await self.schedule_wave(run_id)
            await fleet_runs.advance(self.main, run_id)

    async def schedule_wave(self, run_id: uuid.UUID) -> int:
        """Queue a job for each pending instance of the run's current wave."""
        _, planned = await fleet_runs.wave_jobs(self.main, run_id)
        by_slot: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for job in planned:
            by_slot[job.slot].append({"record_id": str(job.record_id), "run_id": str(run_id),
                                      "slot": job.slot})
        for slot, payloads in by_slot.items():
            await self._app.configure_task(TASK, lock=_slot_lock(run_id, slot)) \
                .batch_defer_async(*payloads)
        return len(planned)

    async def defer_again(self, record_id: uuid.UUID, run_id: uuid.UUID | None,
                          slot: int | None, *, delay_s: float = 0.0,
                          retry: bool = False) -> None:
        """Queue one instance's job (once: a job already queued for it is enough)."""
        lock = _slot_lock(run_id, slot) if run_id is not None and slot is not None else None
        with contextlib.suppress(AlreadyEnqueued):
            await self._app.configure_task(
                TASK, lock=lock, queueing_lock=f"migrate:{record_id}",
                priority=RETRY_PRIORITY if retry else 0,
                schedule_in={"seconds": delay_s} if delay_s > 0 else None,
            ).defer_async(record_id=str(record_id),
                          run_id=str(run_id) if run_id else None, slot=slot)

    async def run_instance(self, migrator: SchemaMigrator, record_id: uuid.UUID,
                           run_id: uuid.UUID | None, slot: int | None, *, owner: str) -> None:
        """The job body: migrate the instance unless its run halted, then let the run take
        its next decision (which may open the next wave)."""
        # (An instance of a halted run is not claimed: it stays pending until a retry.)
        result = await migrator.run(record_id, owner)
        if result.outcome is Outcome.pending and result.code != "leased":
            delay = migrator.retry_delay_s(result.attempts)
            await self.defer_again(record_id, run_id, slot, delay_s=delay, retry=True)
        if run_id is not None:
            decision = await fleet_runs.advance(self.main, run_id)
            if decision.next_wave:
                await self.schedule_wave(run_id)

    async def retry_failed(self, run_id: uuid.UUID) -> int:
        """Failed instances back to pending, the run resumed, their jobs queued."""
        count = await fleet_runs.retry_failed(self.main, run_id)
        _, planned = await fleet_runs.wave_jobs(self.main, run_id)
        for job in planned:
            await self.defer_again(job.record_id, run_id, job.slot)
        await self._settle_empty(run_id)
        return count

    async def tick(self) -> None:
        """Advance every active run; queue again instances whose job is gone (a process
        died between planning and queueing, or a gate's job with its worker)."""
        for run_id in await fleet_runs.active_runs(self.main):
            decision = await fleet_runs.advance(self.main, run_id)
            if decision.next_wave:
                await self.schedule_wave(run_id)
            stale = await fleet_runs.stale_records(self.main, run_id, STALE_AFTER_S)
            for record_id in await self._without_job(stale):
                await self.defer_again(record_id, run_id, None)

    async def _without_job(self, record_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        if not record_ids:
            return []
        async with self.main.connect() as conn:
            rows = (await conn.execute(text(
                "select args->>'record_id' from procrastinate_jobs where task_name = :task "
                "and status in ('todo', 'doing') and args->>'record_id' = any(:ids)"),
                {"task": TASK, "ids": [str(r) for r in record_ids]})).all()
        queued = {row[0] for row in rows}
        return [r for r in record_ids if str(r) not in queued]


def _slot_lock(run_id: uuid.UUID | None, slot: int | None) -> str:
    return f"byod-migrate:{run_id}:{slot}"


async def start_auto_rollout(app: procrastinate.App, main: AsyncEngine, *, target: int,
                             enabled: bool) -> uuid.UUID | None:
    """At start-up: when instances are behind ``target``, begin the rollout (canary first)
    unless automatic rollouts are off. Idempotent across replicas: one automatic run per
    target version (a unique index on main), whoever starts first."""
    if not enabled:
        return None
    behind, _ = await fleet_runs.count_behind(main, target)
    if behind == 0:
        return None
    run_id = await FleetScheduler(app, main).start(RunOptions(
        to_version=target, canary=AUTO_CANARY, max_failure_ratio=AUTO_MAX_FAILURE_RATIO,
        started_by=fleet_runs.AUTO))
    if run_id is not None:
        log.info("automatic schema rollout to version %s started (%s instances behind)",
                 target, behind)
    return run_id

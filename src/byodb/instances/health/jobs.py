"""The health sweep's durable jobs: a procrastinate :func:`blueprint` with a per-minute
periodic tick and the operator's "check all now". An interval that is not whole
minutes (``BYODB_HEALTH_INTERVAL=5``, ``=90``) is honoured by the tick's job itself: it
sleeps until each sweep of its minute is due.

Exactly once across replicas: procrastinate's periodic deferrer queues one job per tick
(``periodic_id`` + timestamp are unique on main) however many workers run it, and the sweep
itself takes an advisory lock on main and, for a scheduled tick, sweeps only when
``BYODB_HEALTH_INTERVAL`` seconds passed since the last sweep began (checked under the lock).
The sweeper reaches a task through the worker's context (``additional_context["health"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued

from byodb.instances.health.sweep import HealthSweeper, SweepTrigger
from byodb.instances.lifecycle.jobs import in_context

HEALTH_QUEUE = "byod_health"
NAMESPACE = "health"

class HealthContext:
    """What the health jobs need from the worker: the sweeper and the sweep interval."""

    def __init__(self, sweeper: HealthSweeper, *, interval_s: float):
        self.sweeper = sweeper
        self.interval_s = interval_s
        # Set when the worker stops: a tick waiting for its next sweep ends at once.
        self.stopping = asyncio.Event()


def health_of(context: procrastinate.JobContext) -> HealthContext:
    return in_context(context, "health", HealthContext, "health sweeper")


TICK_S = 60
"""The periodic tick's period (its cron is every minute)."""


async def scheduled_sweep(context: procrastinate.JobContext, timestamp: int) -> None:
    """The tick of the minute starting at ``timestamp``: every sweep due within that minute,
    each when it is due (the last sweep's start plus the interval), so an interval of 5 s
    or of 90 s means just that. The next minute's tick takes over at the minute's end."""
    health = health_of(context)
    end = timestamp + TICK_S
    while True:
        last = await health.sweeper.last_started()
        due = timestamp if last is None else max(timestamp, last + health.interval_s)
        if due >= end or time.time() >= end:
            return
        wait = due - time.time()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(health.stopping.wait(), wait)
        if health.stopping.is_set():
            return
        if await health.sweeper.sweep_if_due(due, health.interval_s) is None and last == \
                await health.sweeper.last_started():
            return  # nothing swept (not due, or another process holds the sweep lock)


async def operator_sweep(context: procrastinate.JobContext) -> None:
    await health_of(context).sweeper.sweep_when_free(SweepTrigger.operator)


def blueprint() -> procrastinate.Blueprint:
    """The health tasks on a new blueprint (for :data:`NAMESPACE`; new per job app, as
    :func:`byodb.instances.lifecycle.jobs.blueprint` says why)."""
    tasks = procrastinate.Blueprint()
    tasks.periodic(cron="* * * * *", periodic_id="health-tick")(
        tasks.task(name="scheduled_sweep", queue=HEALTH_QUEUE, retry=0, pass_context=True,
                   queueing_lock="health-scheduled-sweep")(scheduled_sweep))
    tasks.task(name="operator_sweep", queue=HEALTH_QUEUE, retry=0,
               pass_context=True)(operator_sweep)
    return tasks


async def request_sweep(app: procrastinate.App) -> bool:
    """Queue a sweep now (an operator's "check all"). False when one is already waiting in
    the queue: that one covers this request."""
    with contextlib.suppress(AlreadyEnqueued):
        await app.configure_task(f"{NAMESPACE}:operator_sweep",
                                 queueing_lock="health-operator-sweep").defer_async()
        return True
    return False

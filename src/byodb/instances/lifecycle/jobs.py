"""The lifecycle's durable jobs: a procrastinate :func:`blueprint` and the queues it needs.

Tasks find the process's :class:`InstanceLifecycle` in the worker's context
(``additional_context["lifecycle"]``), set by whoever runs the worker. Payloads carry ids
only — never credentials or content (DESIGN.md §1, §6). Connecting and moving have queues
of their own (:data:`CONNECT_QUEUE`, :data:`MOVE_QUEUE`), each served by its own workers,
so a handful of stuck moves cannot delay other users' connects; every job body has a
deadline of its own (the lifecycle's limits).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TypeVar

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued

from byodb.instances.lifecycle.disconnect import DisconnectMode
from byodb.instances.lifecycle.owner import InstanceLifecycle

CONNECT_QUEUE = "byod_connect"
MOVE_QUEUE = "byod_move"
NAMESPACE = "byod"

T = TypeVar("T")


def in_context(context: procrastinate.JobContext, key: str, kind: type[T], what: str) -> T:
    """What the worker's runner put in its context under ``key`` (the lifecycle, the
    migrator, the sweeper: each job finds what it needs there, not through another)."""
    found = context.additional_context.get(key)
    if not isinstance(found, kind):
        raise RuntimeError(f"no {what} in the worker context: run the worker through "
                           "byodb serve or byodb worker")
    return found


def lifecycle_of(context: procrastinate.JobContext) -> InstanceLifecycle:
    return in_context(context, "lifecycle", InstanceLifecycle, "lifecycle")


async def provision(context: procrastinate.JobContext, user_id: str,
                    credential_version: int, premium: bool = False) -> None:
    # premium: what the user's token said when they asked (a job has no token); absent in
    # jobs queued before it was passed, which then count as not premium (fail closed).
    await lifecycle_of(context).provision(user_id, credential_version, premium=premium)


async def disconnect(context: procrastinate.JobContext, user_id: str, credential_version: int,
                     mode: str) -> None:
    await lifecycle_of(context).finish_disconnect(user_id, credential_version,
                                                  DisconnectMode(mode))


def blueprint() -> procrastinate.Blueprint:
    """The lifecycle's tasks, registered on a new blueprint (for :data:`NAMESPACE`).

    New for each job app: procrastinate ties a registered task to the app it joins (its
    periodic jobs are deferred through that app), so two apps of one process — a server and
    an operator's command, or two test apps — must not share task objects."""
    tasks = procrastinate.Blueprint()
    tasks.task(name="provision", queue=CONNECT_QUEUE, retry=0, pass_context=True)(provision)
    tasks.task(name="disconnect", queue=MOVE_QUEUE, retry=0, pass_context=True)(disconnect)
    return tasks


class ProcrastinateJobs:
    """:class:`~byodb.instances.lifecycle.owner.LifecycleJobs` (and the version gate's
    ``MigrationJobs``) on a procrastinate app that has :func:`blueprint` registered under
    :data:`NAMESPACE`. One job at a time per user (a shared lock), and the same job is never
    queued twice."""

    def __init__(self, app: procrastinate.App):
        self._app = app

    async def provision(self, user_id: str, credential_version: int, *,
                        premium: bool = False) -> None:
        with contextlib.suppress(AlreadyEnqueued):
            await self._app.configure_task(
                f"{NAMESPACE}:provision", lock=f"user-database:{user_id}",
                queueing_lock=f"provision:{user_id}:{credential_version}",
            ).defer_async(user_id=user_id, credential_version=credential_version,
                          premium=premium)

    async def disconnect(self, user_id: str, credential_version: int,
                         mode: DisconnectMode) -> None:
        with contextlib.suppress(AlreadyEnqueued):
            await self._app.configure_task(
                f"{NAMESPACE}:disconnect", lock=f"user-database:{user_id}",
                queueing_lock=f"disconnect:{user_id}:{credential_version}",
            ).defer_async(user_id=user_id, credential_version=credential_version,
                          mode=mode.value)

    async def migrate(self, record_id: uuid.UUID) -> None:
        """One user's schema migration outside a fleet run (the version gate's; the task is
        ``byodb.instances.fleet.jobs.migrate_instance``)."""
        with contextlib.suppress(AlreadyEnqueued):
            await self._app.configure_task(
                f"{NAMESPACE}:migrate_instance", queueing_lock=f"migrate:{record_id}",
            ).defer_async(record_id=str(record_id), run_id=None, slot=None)

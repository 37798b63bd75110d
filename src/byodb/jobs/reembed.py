"""The re-embedding jobs (``byodb.services.reembed``): a procrastinate :func:`blueprint`
with a per-minute tick that queues one job per due user, and that job.

Bounded: a tick queues at most :data:`USERS_PER_TICK` users, a user's job is queued once
(its queueing lock), asks again whether the user is due when it starts, and runs under the
user's lock (``user-database:<id>``, shared with the lifecycle's jobs, so it never runs
during the user's move or deploy); each run ends after its time budget, and
:data:`REEMBED_QUEUE` has its own workers. Durable and resumable: jobs live on main, and
what is left to do is read from the rows themselves. The worker finds the
:class:`~byodb.services.reembed.Reembedder` in its context (``additional_context["reembed"]``).
"""

from __future__ import annotations

import contextlib
import logging

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued

from byodb.instances.lifecycle.jobs import in_context
from byodb.services.reembed import Reembedder, due_users, is_due

log = logging.getLogger(__name__)

REEMBED_QUEUE = "byodb_reembed"
NAMESPACE = "embeddings"
USERS_PER_TICK = 50


def reembedder_of(context: procrastinate.JobContext) -> Reembedder:
    return in_context(context, "reembed", Reembedder, "re-embedder")


async def reembed_tick(context: procrastinate.JobContext, timestamp: int) -> int:
    """Queue the users whose rows may hold vectors of another model; how many were queued."""
    reembedder = reembedder_of(context)
    queued = 0
    for user_id in await due_users(reembedder.main, reembedder.embedder.name, USERS_PER_TICK):
        queued += await queue_user(context.app, user_id)
    return queued


async def reembed_user(context: procrastinate.JobContext, user_id: str) -> None:
    """Run the user's re-embedding if they are still due when the job starts: it may have
    waited behind others while their database went to sleep or another run did the work."""
    reembedder = reembedder_of(context)
    if await is_due(reembedder.main, reembedder.embedder.name, user_id):
        await reembedder.run(user_id)


def blueprint() -> procrastinate.Blueprint:
    """The re-embedding tasks on a new blueprint (for :data:`NAMESPACE`; new per job app, as
    :func:`byodb.instances.lifecycle.jobs.blueprint` says why)."""
    tasks = procrastinate.Blueprint()
    tasks.periodic(cron="* * * * *", periodic_id="reembed-tick")(
        tasks.task(name="reembed_tick", queue=REEMBED_QUEUE, retry=0, pass_context=True,
                   queueing_lock="reembed-tick")(reembed_tick))
    tasks.task(name="reembed_user", queue=REEMBED_QUEUE, retry=0,
               pass_context=True)(reembed_user)
    return tasks


async def queue_user(app: procrastinate.App, user_id: str) -> bool:
    """Queue one user's run; False when one is already waiting (it covers this one)."""
    with contextlib.suppress(AlreadyEnqueued):
        await app.configure_task(f"{NAMESPACE}:reembed_user", lock=f"user-database:{user_id}",
                                 queueing_lock=f"reembed:{user_id}",
                                 ).defer_async(user_id=user_id)
        return True
    return False

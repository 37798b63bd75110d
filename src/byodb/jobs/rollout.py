"""The automatic schema rollout at start-up (``BYODB_AUTO_MIGRATE``, on by default).

Every process that starts with the job queue (``byodb serve``, ``byodb worker``: the web and
worker roles of ``byodb.runtime.open_process``) calls :func:`begin_auto_rollout`; the first
one to find instances behind the target starts the run (canary first), the others find it
there (one automatic run per target version).
"""

from __future__ import annotations

import logging

import procrastinate
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.instances.fleet.jobs import start_auto_rollout

log = logging.getLogger(__name__)


async def begin_auto_rollout(app: procrastinate.App, main: AsyncEngine, *, target: int,
                             enabled: bool) -> None:
    """Start the rollout to ``target`` when it is due (and ``enabled``: BYODB_AUTO_MIGRATE);
    never fails the start (a rollout that could not begin is begun by the next process, or
    by an operator)."""
    try:
        await start_auto_rollout(app, main, target=target, enabled=enabled)
    except Exception:
        log.exception("could not begin the automatic schema rollout")

"""Admin API of the health sweep: "check all connections now" and the sweep's schedule.

Admins only (``AdminDep``, checked on the server). The check runs as a job on the health
queue (the sweep lock makes it wait for no one and run at most once at a time); the
response says whether it was queued or an earlier request still waits in the queue.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import procrastinate
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from byodb.instances.health import report as health_report
from byodb.instances.health.jobs import request_sweep
from byodb.instances.health.sweep import TICK_SLACK_S
from byodb.web.deps import AdminDep, RuntimeDep

router = APIRouter(prefix="/api/admin/byod", tags=["admin"])


async def _schedule(rt: RuntimeDep) -> dict[str, Any]:
    last = await health_report.last_sweep(rt.main)
    finished = await health_report.last_sweep(rt.main, finished=True)
    interval = rt.health.interval_s
    next_due = None
    if last is not None:
        # Ticks come once a minute: the next sweep begins at the first tick at least
        # (interval - slack) after the last one began (byodb.instances.health.sweep).
        from_last = max(interval - TICK_SLACK_S, 0)
        started = datetime.fromisoformat(last["started_at"])
        next_due = (started + timedelta(seconds=from_last)).isoformat()
    return {"interval_s": interval, "last_sweep": finished,
            "running": last if last is not None and last["finished_at"] is None else None,
            "next_sweep_after": next_due}


@router.get("/health")
async def health_schedule(rt: RuntimeDep, _admin: AdminDep) -> dict[str, Any]:
    """The last finished sweep (time, duration, counts), a running one, and when the next
    scheduled sweep is due."""
    return await _schedule(rt)


@router.post("/health-check", status_code=202,
             responses={202: {"description": "a sweep is queued (or already waiting)"}})
async def check_all_now(request: Request, rt: RuntimeDep, _admin: AdminDep) -> JSONResponse:
    """Check every connected or failing instance now instead of waiting for the next
    sweep. 202: the sweep runs as a job; its result shows in ``GET …/health``."""
    job_app: procrastinate.App = request.app.state.job_app
    queued = await request_sweep(job_app)
    return JSONResponse({"queued": queued, **await _schedule(rt)}, status_code=202)

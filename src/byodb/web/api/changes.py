"""``GET /api/changes``: live updates of the user's content as server-sent events
(``BYOD_REALTIME``; how they are bounded: ``byodb.web.realtime``).

Events: ``ready`` once the stream listens; ``change`` ``{"area", "id", "tab"}`` for each write
of the user's content in any tab or replica (ids only); ``resync`` when this stream fell
behind (reload what you show); ``end`` at the time limit or after ``max_changes``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from byodb.errors import NotFound
from byodb.web.api.byod_events import sse
from byodb.web.deps import PrincipalDep, RuntimeDep
from byodb.web.realtime import RESYNC, ChangeHub

router = APIRouter(prefix="/api", tags=["realtime"])

KEEPALIVE_S = 15.0
MAX_STREAM_S = 30 * 60.0


@router.get("/changes", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}},
                       404: {"description": "realtime_disabled"}})
async def changes(request: Request, rt: RuntimeDep, me: PrincipalDep,
                  max_seconds: float = Query(MAX_STREAM_S, gt=0, le=MAX_STREAM_S),
                  max_changes: int | None = Query(None, ge=1, le=10_000)
                  ) -> StreamingResponse:
    """Server-sent events of changes to your content (ids only, never content). The stream
    ends after ``max_seconds`` (EventSource reconnects by itself) or ``max_changes``."""
    if not rt.settings.byod_realtime:
        raise NotFound("live updates are turned off on this server", code="realtime_disabled")
    hub: ChangeHub = request.app.state.changes
    subscription = hub.open(me.user_id)  # refused (429) here, before the response starts
    queue = subscription.queue

    async def stream() -> AsyncIterator[str]:
        sent = 0
        deadline = time.monotonic() + max_seconds
        try:
            yield "retry: 3000\n\n"
            yield sse("ready", {})
            while max_changes is None or sent < max_changes:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    change = await asyncio.wait_for(queue.get(), min(left, KEEPALIVE_S))
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if change is RESYNC:
                    yield sse("resync", {})
                else:
                    yield sse("change", change.public())
                sent += 1
            yield sse("end", {"reason": "time_limit" if max_changes is None or
                              sent < max_changes else "max_changes"})
        finally:
            subscription.close()

    # The background task closes the slot also when the client left before the stream began
    # (then the generator never runs its finally).
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                             background=BackgroundTask(subscription.close))

"""Live BYOD state as server-sent events, for the deployment progress on Settings → Database.

``GET /api/byod/events`` polls the user's config row on main every half second and sends
``event: state`` with the same JSON as ``GET /api/byod`` whenever it changes. The stream ends
(``event: end``) once the state settles — no deployment running and the connection
``connected``, ``error``, ``none`` or ``disconnected`` — or after a time limit. ``since`` (an
``updated_at`` the client already has) keeps a settled state the client knows from ending the
stream, so "Retry" can open it before the job has started.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from byodb.web.api.byod import byod_state
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/byod", tags=["byod"])

POLL_INTERVAL_S = 0.5
KEEPALIVE_S = 15.0
MAX_STREAM_S = 15 * 60.0
SETTLED_CONNECTION = frozenset({"connected", "error", "none", "disconnected"})


def is_settled(state: dict[str, Any]) -> bool:
    return (state["deployment_status"] != "deploying"
            and state["connection_status"] in SETTLED_CONNECTION)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.get("/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def byod_events(request: Request, rt: RuntimeDep, me: PrincipalDep,
                      since: str | None = Query(None, max_length=64),
                      max_seconds: float = Query(MAX_STREAM_S, gt=0, le=MAX_STREAM_S)
                      ) -> StreamingResponse:
    """Server-sent events: ``state`` on every change, then ``end`` (settled or timed out)."""
    user_id = me.user_id

    async def load() -> dict[str, Any]:
        return byod_state(await rt.lifecycle.state(user_id))

    async def stream() -> AsyncIterator[str]:
        deadline = time.monotonic() + max_seconds
        last_sent = time.monotonic()
        previous: dict[str, Any] | None = None
        yield "retry: 2000\n\n"
        while True:
            try:
                state = await load()
            except Exception:
                yield sse("end", {"reason": "unavailable"})
                return
            if state != previous:
                yield sse("state", state)
                previous, last_sent = state, time.monotonic()
            if is_settled(state) and (since is None or state["updated_at"] != since):
                yield sse("end", {"reason": "settled"})
                return
            if time.monotonic() >= deadline:
                yield sse("end", {"reason": "time_limit"})
                return
            if time.monotonic() - last_sent >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_INTERVAL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

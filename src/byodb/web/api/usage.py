"""Usage: the user's daily token and cost totals per model (written on every reply)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Query

from byodb.content.limits import MAX_LIST_LIMIT, MAX_SHORT_TEXT_CHARS
from byodb.services import usage as usage_service
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/usage", tags=["usage"])


@router.get("")
async def list_usage(rt: RuntimeDep, me: PrincipalDep, since: date | None = None,
                     until: date | None = None,
                     model: str | None = Query(None, max_length=MAX_SHORT_TEXT_CHARS),
                     limit: int = Query(100, ge=1, le=MAX_LIST_LIMIT)) -> dict[str, Any]:
    """One row per day (UTC) and model, newest day first, between ``since`` and ``until``
    (inclusive, ``YYYY-MM-DD``), and ``totals`` over all matching rows."""
    return await usage_service.list_usage(rt.router, me.user_id, since=since, until=until,
                                          model=model, limit=limit)

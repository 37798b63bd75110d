"""Usage records: one row per user, day (UTC) and model, added to on every assistant reply.

The add is one ``INSERT … ON CONFLICT (user_id, date, model) DO UPDATE`` in the reply's own
transaction, so concurrent replies never lose a count and a reply is counted exactly when
it is stored. Replies that failed count too: the request was made.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, cast, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from byodb.content.limits import MAX_LIST_LIMIT
from byodb.content.tables import usage_records
from byodb.errors import InvalidInput
from byodb.ids import new_id
from byodb.routing import Router
from byodb.services.rows import Reader, row_dict

_TOTALS = ("input_tokens", "output_tokens", "cost", "request_count")
_UNKNOWN_MODEL = "unknown"


async def record_reply(conn: AsyncConnection, user_id: str, reply: Any) -> None:
    """Add a stored assistant reply (a row with model, tokens, cost) to today's totals."""
    today = cast(func.timezone("UTC", func.now()), Date)
    statement = insert(usage_records).values(
        id=new_id(), user_id=user_id, date=today, model=reply.model or _UNKNOWN_MODEL,
        input_tokens=reply.input_tokens or 0, output_tokens=reply.output_tokens or 0,
        cost=reply.cost or Decimal(0), request_count=1)
    added = statement.excluded
    await conn.execute(statement.on_conflict_do_update(
        index_elements=["user_id", "date", "model"],
        set_={"input_tokens": usage_records.c.input_tokens + added.input_tokens,
              "output_tokens": usage_records.c.output_tokens + added.output_tokens,
              "cost": usage_records.c.cost + added.cost,
              "request_count": usage_records.c.request_count + added.request_count}))


async def list_usage(router: Router, user_id: str, *, since: date | None = None,
                     until: date | None = None, model: str | None = None,
                     limit: int = 100) -> dict[str, Any]:
    """Daily rows (newest day first) between ``since`` and ``until`` inclusive, and their
    totals."""
    if since is not None and until is not None and since > until:
        raise InvalidInput("since: must not be after until")
    table = usage_records
    where = [table.c.user_id == user_id]
    if since is not None:
        where.append(table.c.date >= since)
    if until is not None:
        where.append(table.c.date <= until)
    if model is not None:
        where.append(table.c.model == model)
    reader = Reader.of([table.c.date, table.c.model, *(table.c[name] for name in _TOTALS)])
    limit = max(1, min(limit, MAX_LIST_LIMIT))
    async with router.connect(user_id, table) as conn:
        rows = (await conn.execute(select(*reader.columns).where(*where)
                                   .order_by(table.c.date.desc(), table.c.model)
                                   .limit(limit))).all()
        totals = (await conn.execute(select(
            *(func.coalesce(func.sum(table.c[name]), 0).label(name) for name in _TOTALS)
        ).where(*where))).one()
    summed = row_dict(totals)
    return {"items": [reader.read(r) for r in rows],
            "totals": {name: (summed[name] if name == "cost" else int(summed[name]))
                       for name in _TOTALS}}

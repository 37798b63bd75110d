"""Routing overhead: the app's service layer (router → engine cache → user's database)
against the same work on a direct connection to the same database, measured in one run.

Prints JSON lines; the last one has ``"ratio"`` = routed p50 / direct p50 (target ≤ 1.15).
Workloads: ``read`` (list 50 conversations through the service layer) and ``mix`` (that
read plus writes and reads on notes, tasks, messages, memories and conversations).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import servers
from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from byodb.content.tables import conversations, memories, messages, notes, tasks
from byodb.ids import new_id
from byodb.instances.config_store import save_credentials
from byodb.instances.guard import parse_database_url
from byodb.instances.provisioning import provision_user_database
from byodb.maindb.urls import async_url
from byodb.runtime import build_runtime
from byodb.services import conversations as conversation_service
from byodb.services.rows import public_columns, row_dict
from byodb.settings import Settings
from byodb.vault import Secret

USER = "bench-user"
_COLUMNS = public_columns(conversations)


async def direct_list(engine: AsyncEngine) -> None:
    query = (select(*_COLUMNS).where(conversations.c.user_id == USER)
             .order_by(conversations.c.is_pinned.desc(),
                       func.coalesce(conversations.c.last_message_at,
                                     conversations.c.created_at).desc(),
                       conversations.c.id.desc()).limit(50))
    async with engine.begin() as conn:
        [row_dict(r) for r in (await conn.execute(query)).all()]


def mixed_statements(conversation_id: object) -> list[tuple[Table, Callable[[], Any]]]:
    """One round of reads and writes across areas: (table it routes by, statement)."""
    return [
        (notes, lambda: notes.insert().values(id=new_id(), user_id=USER, title="n",
                                              content="a note about routing")),
        (tasks, lambda: tasks.insert().values(id=new_id(), user_id=USER, title="t",
                                              status="todo")),
        (tasks, lambda: select(tasks.c.id, tasks.c.title).where(tasks.c.user_id == USER)
         .order_by(tasks.c.created_at.desc()).limit(20)),
        (messages, lambda: messages.insert().values(
            id=new_id(), conversation_id=conversation_id, user_id=USER, role="user",
            content="benchmark message", status="complete")),
        (memories, lambda: select(memories.c.id, memories.c.content)
         .where(memories.c.user_id == USER, memories.c.is_active.is_(True)).limit(20)),
        (conversations, lambda: update(conversations).where(
            conversations.c.id == conversation_id, conversations.c.user_id == USER
        ).values(title="renamed", updated_at=func.now())),
    ]


async def measure(fn: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000


async def run(iterations: int, workload: str, tmp: Path, main_url: str, user_url: str) -> dict:
    settings = Settings(BYODB_DATA_DIR=tmp / "data", BYODB_ALLOW_PRIVATE_HOSTS=True)
    rt = build_runtime(settings, main_url)
    saved = await save_credentials(rt.main, rt.vault, USER, parse_database_url(user_url),
                                   Secret(user_url))
    await provision_user_database(rt, USER, saved.credential_version)
    for index in range(50):
        await conversation_service.create_conversation(rt.router, USER, title=f"c{index}")
    first = (await conversation_service.list_conversations(rt.router, USER, limit=1))[0]
    from uuid import UUID

    cid = UUID(first["id"])
    direct = create_async_engine(async_url(user_url), pool_size=settings.user_pool_size,
                                 max_overflow=settings.user_pool_size)

    mix = mixed_statements(cid)

    async def routed_op() -> None:
        # Reads go through the service layer; the mix runs the same statements through
        # the router as the direct side runs on its own engine.
        await conversation_service.list_conversations(rt.router, USER, limit=50)
        if workload == "mix":
            for table, statement in mix:
                async with rt.router.connect(USER, table) as conn:
                    await conn.execute(statement())

    async def direct_op() -> None:
        await direct_list(direct)
        if workload == "mix":
            for _, statement in mix:
                async with direct.begin() as conn:
                    await conn.execute(statement())

    for _ in range(50):  # warm both pools and the route cache
        await routed_op()
        await direct_op()
    routed_ms: list[float] = []
    direct_ms: list[float] = []
    for index in range(iterations):  # interleaved, alternating order, to share the noise
        pair = (routed_op, direct_op) if index % 2 == 0 else (direct_op, routed_op)
        for op in pair:
            elapsed = await measure(op)
            (routed_ms if op is routed_op else direct_ms).append(elapsed)
    await direct.dispose()
    await rt.close()
    routed_p50 = statistics.median(routed_ms)
    direct_p50 = statistics.median(direct_ms)
    return {"benchmark": "routing", "workload": workload, "iterations": iterations,
            "routed_p50_ms": round(routed_p50, 3), "direct_p50_ms": round(direct_p50, 3),
            "routed_p95_ms": round(statistics.quantiles(routed_ms, n=20)[-1], 3),
            "direct_p95_ms": round(statistics.quantiles(direct_ms, n=20)[-1], 3),
            "ratio": round(routed_p50 / direct_p50, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--workload", choices=["read", "mix", "both"], default="both")
    args = parser.parse_args()
    workloads = ["mix", "read"] if args.workload == "both" else [args.workload]
    with servers() as (main_url, user_url, tmp):
        for workload in workloads:
            print(json.dumps(asyncio.run(run(args.iterations, workload, tmp, main_url,
                                             user_url))), flush=True)


if __name__ == "__main__":
    main()

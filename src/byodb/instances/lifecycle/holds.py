"""Holding a user's content writes on main while their data moves.

Content transactions on main take a shared per-user advisory lock and then re-read the
user's placement (``byodb.routing``); a move takes the same lock exclusively for as long as
it runs, so no write can land on main between its copy and its delete.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg


def user_lock_key(user_id: str) -> int:
    """A stable 63-bit advisory-lock key for a user's content on main."""
    return int.from_bytes(hashlib.sha256(b"byodb-user:" + user_id.encode()).digest()[:8],
                          "big") & 0x7FFF_FFFF_FFFF_FFFF


@asynccontextmanager
async def holding_user_writes_on_main(conn: psycopg.AsyncConnection,
                                      user_id: str) -> AsyncIterator[None]:
    """Hold every content write of ``user_id`` on main while the block runs: a session
    advisory lock taken exclusively on ``conn`` (an autocommit connection to main)."""
    key = (user_lock_key(user_id),)
    await conn.execute("select pg_advisory_lock(%s)", key)
    try:
        yield
    finally:
        if not conn.closed:
            await conn.execute("select pg_advisory_unlock(%s)", key)

"""Cross-process route invalidation: LISTEN for config changes announced on main, so every
replica drops a user's cached route — and their pool, when the connection status changed
(an outage, a recovery, new credentials) — as soon as any replica changes it."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from byodb.instances.lifecycle.config_store import POOL_SUFFIX, ROUTE_CHANNEL
from byodb.maindb.urls import libpq_url
from byodb.routing import Router

log = logging.getLogger(__name__)


async def listen_for_route_changes(main_url: str, router: Router) -> None:
    """Drop a user's cached route (and pool) whenever any process changes their state."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                    libpq_url(main_url), autocommit=True) as conn:
                await conn.execute(f"listen {ROUTE_CHANNEL}")
                async for notice in conn.notifies():
                    if notice.payload.endswith(POOL_SUFFIX):
                        await router.forget_user(notice.payload.removesuffix(POOL_SUFFIX))
                    else:
                        router.invalidate(notice.payload)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("route-change listener lost its connection; reconnecting")
            await asyncio.sleep(1)

"""Opening a user's database: decrypt the saved URL, pass it through the guard, build an engine
bound to the checked address. Used by routing, deploy, retry and health checks alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from byodb.instances.config_store import DatabaseConfig
from byodb.instances.guard import CheckedTarget, Resolver, check_url, system_resolver
from byodb.settings import Settings
from byodb.vault import Vault


async def checked_target_for(
    config: DatabaseConfig, vault: Vault, settings: Settings,
    resolver: Resolver = system_resolver,
) -> CheckedTarget:
    """The saved URL of ``config``, decrypted and checked by the guard."""
    secret_url = config.decrypt_url(vault)
    return await check_url(
        secret_url.reveal(),
        allow_private=settings.private_hosts_allowed,
        tls_required=settings.tls_required,
        resolver=resolver,
        connect_timeout_s=settings.connect_timeout_s,
    )


def _engine_kwargs(target: CheckedTarget) -> dict[str, Any]:
    return {"connect_args": target.connect_kwargs()}


def user_async_engine(target: CheckedTarget, *, pool_size: int = 2) -> AsyncEngine:
    """A small pooled async engine for routed requests."""
    return create_async_engine(
        "postgresql+psycopg://",
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        pool_recycle=600,
        **_engine_kwargs(target),
    )


def user_sync_engine(target: CheckedTarget) -> Engine:
    """A pool-less sync engine for one-off work (deploy, moves) run in a worker thread."""
    return create_engine("postgresql+psycopg://", poolclass=NullPool, **_engine_kwargs(target))

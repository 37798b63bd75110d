"""Bring the main database up to date: Alembic for main tables, then the content schema
(``byodb``) for users who keep their content on main. The job queue's schema is applied by
the job layer (``byodb.jobs``) when a process opens the queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from byodb.content.deploy import deploy_content_schema
from byodb.maindb.urls import libpq_url, sync_url

_MIGRATIONS = Path(__file__).parent / "migrations"
# One advisory lock key for "someone is migrating main" so two processes never race.
_MAIN_MIGRATION_LOCK = 0x6279_6F64_6D61_696E  # "byodmain"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def upgrade_main(url: str) -> None:
    """Apply every pending main migration and deploy the content schema on main.

    Synchronous (Alembic is); call it from a thread when an event loop is running.
    """
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("select pg_advisory_lock(:k)"), {"k": _MAIN_MIGRATION_LOCK})
            try:
                config = alembic_config(url)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
                asyncio.run(_deploy_content_schema_on_main(url))
            finally:
                conn.execute(text("select pg_advisory_unlock(:k)"), {"k": _MAIN_MIGRATION_LOCK})
                conn.commit()
    finally:
        engine.dispose()


async def _deploy_content_schema_on_main(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        await deploy_content_schema(conn)

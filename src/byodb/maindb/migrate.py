"""Bring the main database up to date: Alembic for main tables, the job queue's schema, and
the content schema (``byodb``) for users who keep their content on main."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from byodb.maindb.urls import sync_url

_MIGRATIONS = Path(__file__).parent / "migrations"
# One advisory lock key for "someone is migrating main" so two processes never race.
_MAIN_MIGRATION_LOCK = 0x6279_6F64_6D61_696E  # "byodmain"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def upgrade_main(url: str) -> None:
    """Apply every pending main migration and deploy the content schema on main."""
    from byodb.instances.deploy import deploy_content_schema_on  # avoid import cycle

    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("select pg_advisory_lock(:k)"), {"k": _MAIN_MIGRATION_LOCK})
            try:
                config = alembic_config(url)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
                deploy_content_schema_on(conn)
            finally:
                conn.execute(text("select pg_advisory_unlock(:k)"), {"k": _MAIN_MIGRATION_LOCK})
                conn.commit()
    finally:
        engine.dispose()

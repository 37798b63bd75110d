"""Where the main database is: ``BYODB_DATABASE_URL``, or the embedded PostgreSQL in the
data dir (started on demand, database ``byodb``)."""

from __future__ import annotations

import psycopg

from byodb.maindb.embedded import PostgresCluster
from byodb.settings import Settings

MAIN_DATABASE = "byodb"


def embedded_main(settings: Settings) -> PostgresCluster:
    return PostgresCluster(settings.data_dir.resolve() / "postgres")


def start_main_database(settings: Settings) -> tuple[str, PostgresCluster | None]:
    """The main URL, starting the embedded server when no URL is configured."""
    if settings.database_url:
        return settings.database_url, None
    cluster = embedded_main(settings).start()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s",
                              (MAIN_DATABASE,)).fetchone()
        if not exists:
            conn.execute(f'create database "{MAIN_DATABASE}"')
    return cluster.url(MAIN_DATABASE), cluster

"""Where the main database is: ``BYODB_DATABASE_URL``, or the embedded PostgreSQL in the
data dir (started on demand, database ``byodb``)."""

from __future__ import annotations

import contextlib

import psycopg

from byodb.maindb.embedded import PostgresCluster, ServerShare
from byodb.settings import Settings

MAIN_DATABASE = "byodb"


def embedded_main(settings: Settings) -> PostgresCluster:
    return PostgresCluster(settings.data_dir.resolve() / "postgres")


def start_main_database(settings: Settings) -> tuple[str, ServerShare | None]:
    """The main URL and, for the embedded server, this process's share of it.

    The embedded server is started unless another byodb process already runs it. The caller
    must ``release()`` the share when it is done: the server is stopped then only if no
    other process still uses it (see :class:`~byodb.maindb.embedded.ServerShare`).
    """
    if settings.database_url:
        return settings.database_url, None
    share = embedded_main(settings).share()
    try:
        cluster = share.cluster
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s",
                                  (MAIN_DATABASE,)).fetchone()
            if not exists:
                # Another process starting at the same moment may create it first.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(f'create database "{MAIN_DATABASE}"')
    except BaseException:
        share.release()
        raise
    return cluster.url(MAIN_DATABASE), share


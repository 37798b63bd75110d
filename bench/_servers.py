"""Shared set-up for benchmarks: real PostgreSQL servers and a connected user."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from byodb.maindb.embedded import PostgresCluster
from byodb.maindb.migrate import upgrade_main


@contextmanager
def servers() -> Iterator[tuple[str, str, Path]]:
    """(main URL, user database URL, scratch dir) on two fresh local servers."""
    with tempfile.TemporaryDirectory(prefix="byodb-bench-") as scratch:
        root = Path(scratch)
        main = PostgresCluster(root / "main").start()
        user = PostgresCluster(root / "user").start()
        try:
            for cluster, name in ((main, "byodb"), (user, "mine")):
                with psycopg.connect(cluster.url(), autocommit=True) as conn:
                    conn.execute(f"create database {name}")
            upgrade_main(main.url("byodb"))
            yield main.url("byodb"), user.url("mine"), root
        finally:
            user.stop("immediate")
            main.stop("immediate")


def create_databases(url: str, names: Iterable[str], template: str | None = None) -> list[str]:
    """Create one database per name on the server of ``url`` (a superuser's URL, as
    :func:`servers` yields), empty or a copy of ``template`` (which nobody may be connected
    to), and return their URLs, in order."""
    parts = urlsplit(url)
    urls = []
    statement = sql.SQL("create database {}" if template is None else
                        "create database {} template {}")
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            conn.execute(statement.format(sql.Identifier(name),
                                          *([sql.Identifier(template)] if template else [])))
            urls.append(urlunsplit(parts._replace(path=f"/{name}")))
    return urls


def provider_database(superuser_url: str, name: str, *, vector_schema: str = "public") -> str:
    """A database made the way hosted providers hand them out, on the server of
    ``superuser_url``: owned by a plain login role (no superuser), pgvector enabled by the
    administrator in ``vector_schema``. Returns the owner's URL (what a user pastes)."""
    parts = urlsplit(superuser_url)
    owner, password = f"{name}_owner", f"pw-{name}"
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        conn.execute("set password_encryption = 'scram-sha-256'")
        conn.execute(sql.SQL("create role {} login nosuperuser nocreatedb nocreaterole "
                             "password {}").format(sql.Identifier(owner), sql.Literal(password)))
        conn.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(name),
                                                                  sql.Identifier(owner)))
    with psycopg.connect(urlunsplit(parts._replace(path=f"/{name}")), autocommit=True) as conn:
        conn.execute(sql.SQL("create schema if not exists {}").format(
            sql.Identifier(vector_schema)))
        conn.execute(sql.SQL("grant usage on schema {} to public").format(
            sql.Identifier(vector_schema)))
        conn.execute(sql.SQL("create extension vector schema {}").format(
            sql.Identifier(vector_schema)))
    netloc = f"{owner}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{name}"))

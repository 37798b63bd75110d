"""Shared set-up for benchmarks: real PostgreSQL servers and a connected user."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

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

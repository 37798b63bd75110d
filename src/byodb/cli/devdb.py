"""``byodb devdb start|stop``: a throwaway local PostgreSQL to try "your own database"."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from byodb.cli.common import fail, fresh_settings
from byodb.maindb.embedded import PostgresCluster

commands = typer.Typer()
devdb_app = typer.Typer(help="A throwaway local PostgreSQL to play 'your own database' "
                        "while trying byodb (development only).", no_args_is_help=True)
commands.add_typer(devdb_app, name="devdb")


# A sandbox's name becomes a directory under <data dir>/devdb: no separators, no "..".
_DEVDB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def _devdb_root() -> Path:
    return fresh_settings().data_dir.resolve() / "devdb"


def _devdb(name: str) -> PostgresCluster:
    if not _DEVDB_NAME.fullmatch(name):
        fail(f"invalid sandbox name {name!r}: use letters, digits, '-' and '_'")
    return PostgresCluster(_devdb_root() / name)


@devdb_app.command("start")
def devdb_start(name: Annotated[str, typer.Argument(help="Which sandbox server.")] = "mine",
                ) -> None:
    """Start (or restart on the same port) a local PostgreSQL with pgvector; print its URL."""

    cluster = _devdb(name).start()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = 'mydata'").fetchone():
            conn.execute("create database mydata")
    typer.echo(cluster.url("mydata"))


@devdb_app.command("stop")
def devdb_stop(name: Annotated[str, typer.Argument(help="Which sandbox server.")] = "mine",
               ) -> None:
    """Stop the sandbox server (its data stays; `start` brings it back on the same port)."""
    cluster = _devdb(name)
    if not (cluster.pgdata / "PG_VERSION").exists():
        root = _devdb_root()
        known = sorted(p.name for p in root.iterdir() if (p / "pgdata" / "PG_VERSION").exists()) \
            if root.is_dir() else []
        have = f"there are: {', '.join(known)}" if known else "there are none yet"
        fail(f"no sandbox database named {name!r} in {root} ({have}); "
              f"`byodb devdb start {name}` creates it")
    if cluster.running_port() is None:
        typer.echo(f"{name} was not running")
        return
    cluster.stop()
    typer.echo("stopped")

"""``byodb`` — serve the app, mint development tokens, manage keys and the main database."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import psycopg
import typer
import uvicorn
from rich.console import Console
from rich.panel import Panel
from sqlalchemy.ext.asyncio import create_async_engine

from byodb.content import content_schema_sql
from byodb.content.package import build_package
from byodb.errors import ByodbError
from byodb.instances.config_store import rotate_credentials
from byodb.instances.jobs import ProcrastinateJobs
from byodb.jobs.queue import bound_job_app, ensure_job_schema, run_workers
from byodb.maindb.embedded import PostgresCluster
from byodb.maindb.location import start_main_database
from byodb.maindb.migrate import upgrade_main
from byodb.maindb.urls import async_url
from byodb.runtime import build_runtime
from byodb.settings import get_settings
from byodb.vault import Vault, generate_key_hex
from byodb.vault.keys import load_key_ring
from byodb.web.app import create_app
from byodb.web.auth import issue_dev_token

app = typer.Typer(help="byodb: each user's chat content on a PostgreSQL they own.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The main database.", no_args_is_help=True)
schema_app = typer.Typer(help="The content schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(schema_app, name="schema")
project_app = typer.Typer(help="The manual-deployment package.", no_args_is_help=True)
app.add_typer(project_app, name="project")
err = Console(stderr=True)


def _announce_environment() -> None:
    settings = get_settings()
    if settings.is_production:
        err.print("[bold]byodb[/] production mode")
        return
    err.print(Panel.fit(
        "[bold yellow]DEVELOPMENT MODE[/]\n"
        "Anyone can sign in as any user; tokens and the encryption key are generated and kept\n"
        f"in {settings.data_dir}/. Private and loopback database hosts are allowed.\n"
        "Set BYODB_ENV=production (with BYOD_ENCRYPTION_KEY and a JWT issuer) for real use.",
        border_style="yellow"))


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000) -> None:
    """Run the app (main database embedded unless BYODB_DATABASE_URL is set)."""


    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        settings.check_production()
    except ByodbError as exc:
        err.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from None
    _announce_environment()
    url, cluster = start_main_database(settings)
    if cluster is not None:
        err.print(f"main database: embedded PostgreSQL in {cluster.root}")
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it; with this handler in
    # place that ends in SystemExit, so the embedded server below is stopped too.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(create_app(settings, main_url=url), host=host, port=port,
                    log_level="info", proxy_headers=False,
                    access_log=False)  # ours (web/access_log.py) leaves query strings out
    finally:
        if cluster is not None:
            cluster.stop()


@app.command()
def worker() -> None:
    """Run background jobs in this process (``byodb serve`` also runs them inline)."""

    settings = get_settings()
    settings.check_production()
    url, _ = start_main_database(settings)

    async def run() -> None:
        async with bound_job_app(url) as job_app:
            runtime = build_runtime(settings, url, jobs=ProcrastinateJobs(job_app))
            try:
                await ensure_job_schema(runtime.main, job_app)
                await run_workers(job_app, runtime.lifecycle, name="worker")
            finally:
                await runtime.close()

    asyncio.run(run())


@app.command()
def token(user_id: Annotated[str, typer.Argument(help="The user id (JWT subject).")],
          admin: Annotated[bool, typer.Option("--admin", help="Grant the admin role.")] = False,
          ) -> None:
    """Print a signed development JWT for USER_ID (development auth only)."""

    try:
        typer.echo(issue_dev_token(get_settings(), user_id, admin=admin))
    except (ByodbError, ValueError) as exc:
        err.print(f"[red]error:[/] {getattr(exc, 'message', exc)}")
        raise typer.Exit(2) from None


@app.command()
def keygen() -> None:
    """Print a new encryption key (64 hex characters) for BYOD_ENCRYPTION_KEY."""

    typer.echo(generate_key_hex())


@app.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt stored credentials with the current BYOD_ENCRYPTION_KEY (online).

    Put the old key in BYOD_PREVIOUS_ENCRYPTION_KEYS so existing ciphertexts still open.
    """

    settings = get_settings()
    url, _ = start_main_database(settings)

    async def run() -> int:

        engine = create_async_engine(async_url(url))
        try:
            return await rotate_credentials(engine, Vault(load_key_ring(settings)))
        finally:
            await engine.dispose()

    try:
        count = asyncio.run(run())
    except ByodbError as exc:
        err.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from None
    typer.echo(f"re-encrypted {count} credential(s)")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending main-database migrations (also done at every start)."""

    url, _ = start_main_database(get_settings())
    upgrade_main(url)
    typer.echo("main database is up to date")


@schema_app.command("sql")
def schema_sql() -> None:
    """Print the full DDL of the current content schema version."""

    typer.echo(content_schema_sql(), nl=False)


devdb_app = typer.Typer(help="A throwaway local PostgreSQL to play 'your own database' "
                        "while trying byodb (development only).", no_args_is_help=True)
app.add_typer(devdb_app, name="devdb")


def _devdb(name: str) -> PostgresCluster:

    return PostgresCluster(get_settings().data_dir.resolve() / "devdb" / name)


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
    _devdb(name).stop()
    typer.echo("stopped")


@project_app.command("export")
def project_export(out: Annotated[Path, typer.Argument(help="Where to write the .zip.")]) -> None:
    """Write the manual-deployment package (schema SQL, steps, README) to OUT."""

    out.write_bytes(build_package())
    typer.echo(f"wrote {out}")


if __name__ == "__main__":
    app()

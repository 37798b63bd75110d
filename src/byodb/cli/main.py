"""``byodb`` — serve the app, mint development tokens, manage keys and the main database."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import signal
import socket
from pathlib import Path
from typing import Annotated

import psycopg
import typer
import typer.main
import uvicorn
from rich.markup import escape
from rich.panel import Panel
from sqlalchemy.ext.asyncio import create_async_engine
from typer.core import TyperCommand, TyperGroup, TyperOption

from byodb.cli import fleet
from byodb.cli import health as health_cli
from byodb.cli.common import JsonOption, checked_settings, err, fail, start_main
from byodb.cli.export import export_user
from byodb.content import resolve_schema_target
from byodb.content.package import build_package, full_schema_script
from byodb.errors import ByodbError
from byodb.instances.lifecycle.config_store import rotate_credentials
from byodb.instances.lifecycle.jobs import ProcrastinateJobs
from byodb.jobs.queue import WORKER_CONCURRENCY, bound_job_app, ensure_job_schema, run_workers
from byodb.jobs.rollout import begin_auto_rollout
from byodb.maindb.embedded import PostgresCluster
from byodb.maindb.location import find_main_database, has_embedded_main
from byodb.maindb.migrate import upgrade_main
from byodb.maindb.urls import async_url, redacted_url
from byodb.runtime import build_runtime
from byodb.settings import Settings, get_settings
from byodb.vault import Vault, generate_key_hex
from byodb.vault.keys import load_key_ring
from byodb.web.app import create_app
from byodb.web.auth import dev_secret_path, ensure_dev_secret, issue_dev_token

app = typer.Typer(help="byodb: each user's chat content on a PostgreSQL they own.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The main database.", no_args_is_help=True)
schema_app = typer.Typer(help="The content schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.callback()
def _deployment_options(data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The deployment's data folder (default: BYODB_DATA_DIR, else "
        "./byodb-data).", show_default=False)] = None) -> None:
    """byodb: each user's chat content on a PostgreSQL they own."""
    if data_dir is not None:
        os.environ["BYODB_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()  # every command reads the settings as given now


app.add_typer(schema_app, name="schema")
project_app = typer.Typer(help="The manual-deployment package.", no_args_is_help=True)
app.add_typer(project_app, name="project")
app.add_typer(fleet.migrations_app, name="migrations")
app.command("migrate-all")(fleet.migrate_all)
app.command("export")(export_user)
app.command("health-check")(health_cli.health_check)
app.command("status")(health_cli.status)
app.add_typer(health_cli.instances_app, name="instances")

# The banner's text lines are at most this long: with the panel's border and padding
# (4 columns) it fits an 80-column terminal, so Rich never has to wrap a sentence.
_BANNER_WIDTH = 76


def _development_banner_lines(data_dir: Path) -> list[str]:
    """The development banner, one sentence a line (each ≤ _BANNER_WIDTH when it can be)."""
    keys = f"Tokens and the encryption key are generated and kept in {data_dir}/."
    if len(keys) > _BANNER_WIDTH:  # a long data dir gets a line of its own
        keys = f"Tokens and the encryption key are generated and kept in\n  {data_dir}/."
    return [
        "Anyone can sign in as any user.",
        keys,
        "Private and loopback database hosts are allowed.",
        "For real use: BYODB_ENV=production, BYOD_ENCRYPTION_KEY and a JWT issuer.",
    ]


def _announce_environment() -> None:
    settings = get_settings()
    if settings.is_production:
        err.print("[bold]byodb[/] production mode")
        return
    body = "\n".join(escape(line) for line in _development_banner_lines(settings.data_dir))
    err.print(Panel.fit(f"[bold yellow]DEVELOPMENT MODE[/]\n{body}", border_style="yellow"))


def _hold_port(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port now, before anything starts, and keep the socket for
    uvicorn: a taken port is one line and exit 2, and nobody can take it meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(False)
    except OSError as exc:
        sock.close()
        another = f"pick another with --port (e.g. --port {port + 1})" if port < 65535 \
            else "pick another with --port"
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is already in use; {another}")
        if exc.errno == errno.EACCES:
            fail(f"not allowed to listen on port {port} on {host}; {another}")
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
             f"check --host, or {another}")
    return sock


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000) -> None:
    """Run the app (main database embedded unless BYODB_DATABASE_URL is set); sets the
    deployment up on first start."""

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = checked_settings()
    _announce_environment()
    # Before the slow part: a taken port is reported at once, with nothing started, and
    # the port is ours from here on.
    sock = _hold_port(host, port)
    try:
        url, share = start_main(settings, create=True)
    except BaseException:
        sock.close()
        raise
    try:
        if share is not None:
            how = ("started by this process" if share.started
                   else "already running; shared with the byodb processes using it")
            err.print(f"main database: embedded PostgreSQL in {escape(str(share.cluster.root))} "
                      f"({how})", soft_wrap=True)
        upgrade_main(url)
        ensure_dev_secret(settings)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it; with this handler in
        # place that ends in SystemExit, so this process's share of the embedded server is
        # released too (which stops it only if no other byodb process uses it).
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        config = uvicorn.Config(create_app(settings, main_url=url, migrate=False),
                                host=host, port=port, log_level="info", proxy_headers=False,
                                access_log=False)  # ours (web/access_log.py) leaves queries out
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if share is not None and not share.release():
            err.print("embedded PostgreSQL left running: another byodb process uses it")


@app.command()
def init(as_json: JsonOption = False) -> None:
    """Set up a new deployment where byodb looks (--data-dir, BYODB_DATA_DIR or
    ./byodb-data; BYODB_DATABASE_URL for main): the main database and its tables and, in
    development, the encryption key and token secret. Safe to run again."""

    settings = checked_settings()
    existed = (bool(settings.database_url) and _has_tables(settings)) \
        or (not settings.database_url and has_embedded_main(settings))
    url, share = start_main(settings, create=True)
    try:
        upgrade_main(url)
    finally:
        if share is not None:
            share.release()
    ensure_dev_secret(settings)
    report = {"created": not existed, "data_dir": str(settings.data_dir.resolve()),
              "main_database": redacted_url(url) if settings.database_url
              else f"embedded PostgreSQL in {settings.data_dir.resolve() / 'postgres'}",
              "encryption_key": "BYOD_ENCRYPTION_KEY" if settings.encryption_key
              else str((settings.data_dir / 'encryption.key').resolve())}
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(("set up a new deployment" if report["created"] else
                "deployment already set up; main database is up to date")
               + f": main database {report['main_database']}; encryption key "
               f"{report['encryption_key']}")


def _has_tables(settings: Settings) -> bool:
    try:
        find_main_database(settings)
    except ByodbError:
        return False
    return True


@app.command()
def worker() -> None:
    """Run background jobs in this process (`byodb serve` also runs them inline)."""

    settings = checked_settings()
    url, share = start_main(settings)
    queues = ", ".join(f"{queue} ({concurrency} at a time)"
                       for queue, concurrency in WORKER_CONCURRENCY.items())
    # One line: what this process does and where, the password masked.
    typer.echo(f"byodb worker: serving queues {queues} from {redacted_url(url)}", err=True)

    async def run() -> None:
        async with bound_job_app(url) as job_app:
            runtime = build_runtime(settings, url, jobs=ProcrastinateJobs(job_app))
            try:
                await ensure_job_schema(runtime.main, job_app)
                await begin_auto_rollout(job_app, runtime)
                await run_workers(job_app, runtime.lifecycle, name="worker",
                                  migrator=runtime.migrator,
                                  health=runtime.health,
                                  reembedder=runtime.reembedder)
            finally:
                await runtime.close()

    # As in serve: SIGTERM ends in SystemExit, so the share below is released.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a foreground worker is stopped, not an error
    finally:
        if share is not None:
            share.release()


@app.command()
def token(user_id: Annotated[str, typer.Argument(help="The user id (JWT subject).")],
          admin: Annotated[bool, typer.Option("--admin", help="Grant the admin role.")] = False,
          premium: Annotated[bool, typer.Option(
              "--premium", help="Set the premium claim (BYODB_PREMIUM_CLAIM).")] = False,
          ) -> None:
    """Print a signed development JWT for USER_ID (development auth only)."""

    settings = checked_settings()
    if not settings.is_production and not dev_secret_path(settings).exists():
        fail(f"no development token secret: looked for {dev_secret_path(settings).resolve()} "
             f"(made by `byodb serve` or `byodb init`); run this in the folder that holds "
             f"the deployment's byodb-data, or pass --data-dir DIR")
    try:
        typer.echo(issue_dev_token(settings, user_id, admin=admin, premium=premium))
    except (ByodbError, ValueError) as exc:
        err.print(f"[red]error:[/] {getattr(exc, 'message', exc)}")
        raise typer.Exit(2) from None


@app.command()
def keygen() -> None:
    """Print a new encryption key (64 hex characters) for BYOD_ENCRYPTION_KEY."""

    typer.echo(generate_key_hex())


@app.command("rotate-key")
def rotate_key(as_json: JsonOption = False) -> None:
    """Re-encrypt stored credentials with the current BYOD_ENCRYPTION_KEY (online).

    Put the old key in BYOD_PREVIOUS_ENCRYPTION_KEYS so existing ciphertexts still open.
    """

    settings = checked_settings()
    url, share = start_main(settings)

    async def run() -> int:

        engine = create_async_engine(async_url(url))
        try:
            return await rotate_credentials(engine, Vault(load_key_ring(settings)))
        finally:
            await engine.dispose()

    try:
        count = asyncio.run(run())
    except ByodbError as exc:
        fail(exc.message)
    finally:
        if share is not None:
            share.release()
    if as_json:
        typer.echo(json.dumps({"reencrypted": count}))
    else:
        typer.echo(f"re-encrypted {count} credential(s)")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending main-database migrations (also done at every start)."""

    url, share = start_main(checked_settings(), create=True)
    try:
        upgrade_main(url)
    finally:
        if share is not None:
            share.release()
    typer.echo("main database is up to date")


@schema_app.command("sql")
def schema_sql(version: Annotated[int | None, typer.Option(
        "--version", help="The schema version to print (default: BYODB_SCHEMA_TARGET, "
        "else the latest).")] = None) -> None:
    """Print the SQL that creates a content schema version on an empty database: apply it
    with `psql "$URL" -v ON_ERROR_STOP=1 -f -` as the database owner, in one transaction
    (pgvector found where it is installed, the DDL, the byodb_meta record)."""

    try:
        if version is None:
            version = resolve_schema_target(get_settings().schema_target)
        typer.echo(full_schema_script(version), nl=False)
    except ByodbError as exc:
        fail(exc.message)
    except ValueError as exc:
        fail(str(exc))


devdb_app = typer.Typer(help="A throwaway local PostgreSQL to play 'your own database' "
                        "while trying byodb (development only).", no_args_is_help=True)
app.add_typer(devdb_app, name="devdb")


# A sandbox's name becomes a directory under <data dir>/devdb: no separators, no "..".
_DEVDB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def _devdb_root() -> Path:
    return get_settings().data_dir.resolve() / "devdb"


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


@project_app.command("export")
def project_export(out: Annotated[Path, typer.Argument(help="Where to write the .zip.")]) -> None:
    """Write the manual-deployment package (schema SQL, steps, README) to OUT."""

    if not out.parent.is_dir():  # not created for the user: a typo should not make folders
        fail(f"cannot write {out}: the folder {out.parent} does not exist")
    try:
        target = resolve_schema_target(get_settings().schema_target)
        out.write_bytes(build_package(target))
    except ByodbError as exc:
        fail(exc.message)
    except OSError as exc:  # a directory named OUT, no permission, a full disk…
        fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {out}")


def _hide_flag_types(command: TyperCommand | TyperGroup) -> None:
    """A flag takes no value, so its help shows no type (Typer prints ``<bool>``)."""
    for param in [*command.params, command.get_help_option(typer.Context(command))]:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            if isinstance(sub, TyperCommand | TyperGroup):
                _hide_flag_types(sub)


def main() -> None:
    """The ``byodb`` entry point: the app, its flags' help without a type."""
    built = typer.main.get_command(app)
    if isinstance(built, TyperCommand | TyperGroup):
        _hide_flag_types(built)
    built()


if __name__ == "__main__":
    main()

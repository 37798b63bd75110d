"""Setting a deployment up: ``byodb init``, ``byodb db upgrade`` and the development
tokens of ``byodb token``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from byodb.cli.common import JsonOption, checked_settings, err, fail, start_main
from byodb.errors import ByodbError
from byodb.maindb.location import find_main_database, has_embedded_main
from byodb.maindb.migrate import upgrade_main
from byodb.maindb.urls import redacted_url
from byodb.settings import Settings
from byodb.web.auth import dev_secret_path, ensure_dev_secret, issue_dev_token

commands = typer.Typer()
db_app = typer.Typer(help="The main database.", no_args_is_help=True)
commands.add_typer(db_app, name="db")


@commands.command()
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


@commands.command()
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

"""The content schema from a shell: ``byodb schema sql`` and the manual-deployment package
of ``byodb project export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from byodb.cli.common import fail, fresh_settings
from byodb.content import resolve_schema_target
from byodb.content.package import build_package, full_schema_script
from byodb.errors import ByodbError

commands = typer.Typer()
schema_app = typer.Typer(help="The content schema.", no_args_is_help=True)
commands.add_typer(schema_app, name="schema")
project_app = typer.Typer(help="The manual-deployment package.", no_args_is_help=True)
commands.add_typer(project_app, name="project")


@schema_app.command("sql")
def schema_sql(version: Annotated[int | None, typer.Option(
        "--version", help="The schema version to print (default: BYODB_SCHEMA_TARGET, "
        "else the latest).")] = None) -> None:
    """Print the SQL that creates a content schema version on an empty database: apply it
    with `psql "$URL" -v ON_ERROR_STOP=1 -f -` as the database owner, in one transaction
    (pgvector found where it is installed, the DDL, the byodb_meta record)."""

    try:
        if version is None:
            version = resolve_schema_target(fresh_settings().schema_target)
        typer.echo(full_schema_script(version), nl=False)
    except ByodbError as exc:
        fail(exc.message)
    except ValueError as exc:
        fail(str(exc))


@project_app.command("export")
def project_export(out: Annotated[Path, typer.Argument(help="Where to write the .zip.")]) -> None:
    """Write the manual-deployment package (schema SQL, steps, README) to OUT."""

    if not out.parent.is_dir():  # not created for the user: a typo should not make folders
        fail(f"cannot write {out}: the folder {out.parent} does not exist")
    try:
        target = resolve_schema_target(fresh_settings().schema_target)
        out.write_bytes(build_package(target))
    except ByodbError as exc:
        fail(exc.message)
    except OSError as exc:  # a directory named OUT, no permission, a full disk…
        fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"wrote {out}")

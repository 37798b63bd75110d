"""``byodb export USER_ID --out FILE``: an operator writes a user's export archive to a file
(the same archive as ``GET /api/export``, read from wherever the user's content lives).

An unknown user id is a usage error (exit 2, nothing written), not an empty archive; a user
whose database cannot be read is told to the operator in the operator's terms (exit 1)."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.cli.common import JsonOption, checked_settings, fail, main_database, shown
from byodb.errors import ByodbError
from byodb.instances.health import report as health_report
from byodb.maindb.tables import user_database_config, users
from byodb.routing import Router
from byodb.runtime import Role, open_process, user_router
from byodb.services.portability.export import (
    ExportIncomplete,
    ExportOutcome,
    check_readable,
    export_archive,
)
from byodb.settings import Settings

commands = typer.Typer()


class _OperatorError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.message, self.code = message, code


async def _known_user(main: AsyncEngine, user_id: str) -> bool:
    """Whether main knows the user: signed in once, or a database recorded for them."""
    async with main.connect() as conn:
        return bool((await conn.execute(select(or_(
            exists().where(users.c.id == user_id),
            exists().where(user_database_config.c.user_id == user_id))))).scalar())


async def _write(settings: Settings, main_url: str, user_id: str, out: Path) -> None:
    outcome = ExportOutcome()
    async with open_process(settings, Role.operator, main_url) as process:
        router, main = user_router(process.core), process.core.main
        try:
            await _export(settings, router, main, user_id, out, outcome)
        finally:
            await router.close()
    if not outcome.complete:
        raise ExportIncomplete(f"the export is incomplete: {outcome.reason}",
                               hint="nothing was written to the output file; try again")


async def _export(settings: Settings, router: Router, main: AsyncEngine, user_id: str,
                  out: Path, outcome: ExportOutcome) -> None:
    """The user known and their content readable, their archive streamed to ``out``."""
    if not await _known_user(main, user_id):
        raise _OperatorError(
            f"no user {user_id!r} on this deployment (never signed in, no database "
            f"recorded); nothing was written. `byodb instances list` shows the users "
            f"with their own database", 2)
    try:
        await check_readable(router, user_id)
    except ByodbError as exc:
        item = await health_report.get_instance(main, user_id)
        state = "" if item is None else (
            f"; it is {item['connection_status']}"
            + (f" ({item['connection_error_code'] or item['health_error_code']})"
               if item["connection_error_code"] or item["health_error_code"] else ""))
        raise _OperatorError(
            f"cannot read the content of user {user_id!r}: {exc.code}{state}; nothing "
            f"was written. `byodb instances show {user_id}` has the details; export "
            f"again once `byodb instances check {user_id}` says ok", 1) from None
    with out.open("wb") as handle:
        async for chunk in export_archive(router, user_id, outcome=outcome,
                                          timeout_s=settings.export_timeout_s):
            handle.write(chunk)


def _summary(out: Path) -> dict[str, Any]:
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    tables = {name.removeprefix("tables/").removesuffix(".jsonl"): entry["rows"]
              for name, entry in manifest["files"].items() if name.startswith("tables/")}
    return {"user_id": manifest["user_id"], "out": str(out), "bytes": out.stat().st_size,
            "rows": {t: n for t, n in tables.items() if n}}


@commands.command("export")
def export_user(
        user_id: Annotated[str, typer.Argument(help="The user id (JWT subject).")],
        out: Annotated[Path, typer.Option("--out", help="Where to write the .zip.")],
        as_json: JsonOption = False) -> None:
    """Write everything USER_ID owns (tables, files, conversations.json, Markdown) to OUT."""
    if not out.parent.is_dir():  # not created for the operator: a typo should not make folders
        fail(f"cannot write {out}: the folder {out.parent} does not exist")
    settings = checked_settings()
    partial = out.with_name(out.name + ".partial")
    with main_database(settings) as main_url:
        try:
            asyncio.run(_write(settings, main_url, user_id, partial))
        except _OperatorError as exc:
            partial.unlink(missing_ok=True)
            fail(exc.message, exc.code)
        except ExportIncomplete as exc:
            partial.unlink(missing_ok=True)
            fail(f"{exc.message}; nothing was written to {out}", 1)
        except ByodbError as exc:
            partial.unlink(missing_ok=True)
            fail(f"export of {user_id!r} failed: {exc.code}: {exc.message}; nothing was "
                 f"written", 1)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            fail(f"cannot write {out}: {exc.strerror or exc}")
    partial.replace(out)  # a finished archive or none: never half a zip under OUT's name
    summary = _summary(out)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"wrote {out}: {sum(summary['rows'].values())} rows of {shown(user_id)}")

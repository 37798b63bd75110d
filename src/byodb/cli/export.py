"""``byodb export USER_ID --out FILE``: an operator writes a user's export archive to a file
(the same archive as ``GET /api/export``, read from wherever the user's content lives)."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer

from byodb.cli.common import checked_settings, fail, main_database, operator_session, shown
from byodb.errors import ByodbError
from byodb.services.portability.export import (
    ExportIncomplete,
    ExportOutcome,
    check_readable,
    export_archive,
)
from byodb.settings import Settings


async def _write(settings: Settings, main_url: str, user_id: str, out: Path) -> None:
    outcome = ExportOutcome()
    async with operator_session(settings, main_url) as session:
        router = session.runtime.router
        await check_readable(router, user_id)
        with out.open("wb") as handle:
            async for chunk in export_archive(router, user_id, outcome=outcome,
                                              timeout_s=settings.export_timeout_s):
                handle.write(chunk)
    if not outcome.complete:
        raise ExportIncomplete(f"the export is incomplete: {outcome.reason}",
                               hint="nothing was written to the output file; try again")


def _summary(out: Path) -> dict[str, Any]:
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    tables = {name.removeprefix("tables/").removesuffix(".jsonl"): entry["rows"]
              for name, entry in manifest["files"].items() if name.startswith("tables/")}
    return {"user_id": manifest["user_id"], "out": str(out), "bytes": out.stat().st_size,
            "rows": {t: n for t, n in tables.items() if n}}


def export_user(
        user_id: Annotated[str, typer.Argument(help="The user id (JWT subject).")],
        out: Annotated[Path, typer.Option("--out", help="Where to write the .zip.")],
        as_json: Annotated[bool, typer.Option("--json", help="End with a JSON summary line.")]
        = False) -> None:
    """Write everything USER_ID owns (tables, files, conversations.json, Markdown) to OUT."""
    if not out.parent.is_dir():  # not created for the operator: a typo should not make folders
        fail(f"cannot write {out}: the folder {out.parent} does not exist")
    settings = checked_settings()
    partial = out.with_name(out.name + ".partial")
    with main_database(settings) as main_url:
        try:
            asyncio.run(_write(settings, main_url, user_id, partial))
        except ByodbError as exc:
            partial.unlink(missing_ok=True)
            fail(exc.message + (f" ({exc.hint})" if exc.hint else ""), 1)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            fail(f"cannot write {out}: {exc.strerror or exc}")
    partial.replace(out)  # a finished archive or none: never half a zip under OUT's name
    summary = _summary(out)
    typer.echo(f"wrote {out}: {sum(summary['rows'].values())} rows of {shown(user_id)}")
    if as_json:
        typer.echo(json.dumps(summary))

"""Imports: check an uploaded file completely, then write its rows in the background.

The order of an import (docs/import.md):

1. :func:`prepare_import` (in the request, on a worker thread: it is parsing, no database)
   reads the whole file once and checks every row with the API's limits
   (``portability.rowcheck`` and the sources); a bad or hostile file is refused here with a
   4xx and nothing was written.
2. :func:`start_import` records a ``jobs`` row on main (kind ``import``) and returns it; a
   task of this process then runs :func:`write_import`, and updates the row with its
   progress (rows written) and its end (``completed`` with the counts, or ``failed`` with
   the error in the API's shape). ``GET /api/import/{id}`` reads it.
3. :func:`write_import` reads the file again and writes its rows in one transaction on the
   database that holds the user's content (``Router.connect``), by the rules of a data move
   (``byodb.instances.moves.merge_rows``): a row whose id is there already is kept, an id
   of another account's row refuses the import, and everything is verified before commit.
   So an import is all or nothing, and importing the same file again adds nothing.

The uploaded file waits in a temporary file of this process while its task runs; a process
that stops meanwhile leaves the job ``running`` without progress, which is reported as
failed (``import_interrupted``) once it is older than the deadline: importing again is safe.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from psycopg import sql
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.content import CONTENT_SCHEMA, CONTENT_SCHEMA_VERSION
from byodb.content.deploy import deployed_schema
from byodb.content.tables import messages, metadata
from byodb.errors import ByodbError, Conflict, NotFound
from byodb.ids import new_id
from byodb.instances.moves import MoveRefused, merge_rows
from byodb.maindb.tables import jobs
from byodb.routing import Router
from byodb.services.portability.archive import ImportInvalid, ImportLimits, ImportTooLarge
from byodb.services.portability.columns import ColumnSpec, content_tables, stored_specs
from byodb.services.portability.export import driver_connection
from byodb.services.portability.sources import open_source

log = logging.getLogger(__name__)

JOB_KIND = "import"
PROGRESS_EVERY = 5_000


class ImportConflict(ByodbError):
    """Rows of the file use ids of another account's rows (never overwritten)."""

    code = "import_id_conflict"
    status = 409


@dataclass(frozen=True)
class PreparedImport:
    """A file whose every row was checked: what it holds, ready to be written."""

    path: Path
    kind: str
    rows: dict[str, int]
    limits: ImportLimits

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _specs(table_name: str) -> list[ColumnSpec]:
    table = metadata.tables[f"{CONTENT_SCHEMA}.{table_name}"]
    return stored_specs(table, {c.name for c in table.columns})


def prepare_import(path: Path, user_id: str, limits: ImportLimits) -> PreparedImport:
    """Read and check the whole file (blocking: run it on a thread)."""
    source = open_source(path, user_id, limits)
    try:
        counts: dict[str, int] = {}
        total = 0
        for table in content_tables():
            count = 0
            for _ in source.rows(table.name, _specs(table.name)):
                count += 1
                total += 1
                if total > limits.rows:
                    raise ImportTooLarge(f"the file holds more than {limits.rows} rows, the "
                                         "most one import writes", hint="Split the export.")
            if count:
                counts[table.name] = count
        source.verify(counts)
        return PreparedImport(path, source.kind, counts, limits)
    finally:
        source.close()


Progress = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class ImportReport:
    rows: dict[str, int] = field(default_factory=dict)
    already_present: int = 0

    @property
    def created(self) -> int:
        return sum(self.rows.values()) - self.already_present


async def write_import(router: Router, user_id: str, prepared: PreparedImport, *,
                       timeout_s: float, progress: Progress | None = None) -> ImportReport:
    """Write the checked file's rows (see the module docstring, step 3)."""
    source = open_source(prepared.path, user_id, prepared.limits)
    written = 0

    async def feed(table: str, columns: tuple[str, ...]) -> AsyncIterator[Sequence[Any]]:
        nonlocal written
        for row in source.rows(table, _specs(table)):
            yield tuple(row.get(c) for c in columns)
            written += 1
            if progress is not None and written % PROGRESS_EVERY == 0:
                await progress({"phase": f"Writing {table}", "written": written})

    async def phase(message: str) -> None:
        if progress is not None:
            await progress({"phase": message, "written": written})

    try:
        async with router.connect(user_id, messages, timeout_s=timeout_s,
                                  file_bytes=prepared.rows.get("files", 0) > 0) as routed:
            conn = await driver_connection(routed)
            # Merging a large file takes single statements longer than a request's.
            await conn.execute(sql.SQL("set local statement_timeout = {}").format(
                sql.Literal(max(1, round(timeout_s * 1000)))))
            schema = await deployed_schema(conn)
            version = schema.version if schema else CONTENT_SCHEMA_VERSION
            moved = await merge_rows(conn, user_id, feed, version=version, progress=phase)
    except MoveRefused as exc:
        message = exc.message.replace("nothing was moved", "nothing was imported")
        if exc.code == "move_id_conflict":
            raise ImportConflict(message, hint="The file holds rows of another account; "
                                 "nothing was imported.") from None
        raise ImportInvalid(message, hint="Nothing was imported.") from None
    finally:
        source.close()
    return ImportReport(rows={k: v for k, v in moved.rows.items() if v},
                        already_present=moved.merged)


# --- the job row -------------------------------------------------------------------------


def _detail(row: Any) -> dict[str, Any]:
    try:
        detail = json.loads(row.detail or "{}")
    except ValueError:
        detail = {}
    return detail if isinstance(detail, dict) else {}


def job_view(row: Any, *, stale_after: timedelta, now: datetime | None = None) -> dict[str, Any]:
    """A job row as the API shows it; a ``running`` job that stopped reporting is failed."""
    detail = _detail(row)
    status = row.status
    if status == "running" and (now or datetime.now(UTC)) - row.updated_at > stale_after:
        status = "failed"
        detail["error"] = {"code": "import_interrupted",
                           "message": "The import stopped before it finished (the server "
                                      "restarted); nothing of it was written.",
                           "hint": "Import the file again."}
    return {"id": str(row.id), "status": status, **detail,
            "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat()}


async def start_job(main: AsyncEngine, user_id: str, prepared: PreparedImport, *,
                    stale_after: timedelta) -> dict[str, Any]:
    """The job row of a new import; :class:`Conflict` while another import of the user runs."""
    async with main.begin() as conn:
        # One import per user at a time: the lock makes check-then-insert atomic.
        await conn.execute(text("select pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                           {"k": f"byodb-import:{user_id}"})
        running = (await conn.execute(
            select(jobs).where(jobs.c.user_id == user_id, jobs.c.kind == JOB_KIND,
                               jobs.c.status == "running"))).all()
        if any(job_view(r, stale_after=stale_after)["status"] == "running" for r in running):
            raise Conflict("Another import of yours is still running.",
                           hint="Wait until it finishes (GET /api/import/{id}).")
        detail = {"source": prepared.kind, "rows": prepared.rows, "total": prepared.total,
                  "written": 0, "phase": "Queued"}
        row = (await conn.execute(jobs.insert().values(
            id=new_id(), kind=JOB_KIND, user_id=user_id, status="running",
            detail=json.dumps(detail)).returning(jobs))).one()
    return job_view(row, stale_after=stale_after)


async def update_job(main: AsyncEngine, job_id: UUID, changes: dict[str, Any], *,
                     status: str = "running") -> None:
    async with main.begin() as conn:
        row = (await conn.execute(select(jobs.c.detail).where(jobs.c.id == job_id))).first()
        detail = _detail(row) if row else {}
        detail.update(changes)
        await conn.execute(update(jobs).where(jobs.c.id == job_id).values(
            status=status, detail=json.dumps(detail), updated_at=datetime.now(UTC)))


async def get_job(main: AsyncEngine, user_id: str, job_id: UUID, *,
                  stale_after: timedelta) -> dict[str, Any]:
    async with main.connect() as conn:
        row = (await conn.execute(select(jobs).where(
            jobs.c.id == job_id, jobs.c.user_id == user_id, jobs.c.kind == JOB_KIND))).first()
    if row is None:
        raise NotFound("import not found")
    return job_view(row, stale_after=stale_after)


async def run_import(main: AsyncEngine, router: Router, user_id: str, job_id: UUID,
                     prepared: PreparedImport, *, timeout_s: float) -> None:
    """Write the import and record how it ended in its job row (never raises a ByodbError:
    the error is the job's outcome)."""
    async def progress(changes: dict[str, Any]) -> None:
        await update_job(main, job_id, changes)

    try:
        report = await write_import(router, user_id, prepared, timeout_s=timeout_s,
                                    progress=progress)
    except ByodbError as exc:
        await update_job(main, job_id, {"phase": "Failed", "error": {
            "code": exc.code, "message": exc.message, "hint": exc.hint}}, status="failed")
        return
    except Exception as exc:  # the job must end either way; the type says what, not content
        log.exception("an import failed unexpectedly")
        await update_job(main, job_id, {"phase": "Failed", "error": {
            "code": "import_failed", "message": f"The import failed ({type(exc).__name__}); "
            "nothing of it was written.", "hint": "Try again later."}}, status="failed")
        return
    finally:
        prepared.path.unlink(missing_ok=True)
    await update_job(main, job_id, {"phase": "Done", "written": sum(report.rows.values()),
                                    "result": {"rows": report.rows, "created": report.created,
                                               "already_present": report.already_present}},
                     status="completed")

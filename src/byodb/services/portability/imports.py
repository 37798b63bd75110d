"""Imports: a durable job that admits, receives, checks and writes one uploaded export.

The order of an import (docs/import.md):

1. :func:`admit` — before a byte of the upload is read: at most one running import per
   user and ``max_running`` in all (every process on main); the user's uploads of the last
   day stay within their allowance. The job row (main's ``jobs``, kind ``import``) is
   created here, ``running`` in phase ``Receiving``; a second upload of the user gets
   :class:`~byodb.errors.Conflict` (409) at once.
2. The web layer spools the upload once, into the job's directory under the data
   directory's temporary area (never main), then a worker process checks it
   (``portability.check``): one reading of the file, every row checked with the API's
   limits, the checked rows spooled as COPY text. A refusal ends the job ``failed`` with
   the error, which the request also answers (4xx); nothing was written.
3. :func:`run_import` (a task of the process) streams the spooled rows to ``COPY`` in one
   transaction on the database that holds the user's content (``Router.connect``), by the
   rules of a data move (``byodb.instances.lifecycle.moves.merge_rows``): all or nothing, importing
   the same file again adds nothing. The job ends ``completed`` with the counts, or
   ``failed`` with the error; its directory is removed either way.

While it runs, :class:`JobReporter` writes the job's progress (bytes received and checked,
rows written) and a heartbeat every few seconds. A job whose heartbeat stopped (its process
died) reads as ``failed`` with ``import_interrupted`` — its transaction never committed, so
nothing of it was written — and :func:`recover` removes what such jobs left on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from psycopg import sql
from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from byodb.content import CONTENT_SCHEMA_VERSION, content_table_names
from byodb.content.deploy import deployed_schema
from byodb.content.tables import messages
from byodb.errors import ByodbError, Conflict, NotFound, RateLimited
from byodb.executors import IoThreads
from byodb.ids import new_id
from byodb.instances.lifecycle.move_plan import MoveRefused
from byodb.instances.lifecycle.moves import merge_rows
from byodb.maindb.tables import jobs
from byodb.routing import Router
from byodb.services.portability.archive import ImportInvalid
from byodb.services.portability.check import Checked
from byodb.services.portability.copytext import project
from byodb.services.portability.export import driver_connection

log = logging.getLogger(__name__)

JOB_KIND = "import"
HEARTBEAT_S = 2.0
STALE_AFTER = timedelta(seconds=60)
"""A running job whose heartbeat is older than this was interrupted (its process died)."""
PROGRESS_EVERY = 5_000
_CHUNK = 1024 * 1024


class ImportsBusy(ByodbError):
    """The server runs as many imports as it allows at once."""

    code = "imports_busy"
    status = 503


class ImportRefused(ImportInvalid):
    """The file's rows use ids that are not the importer's to use (one answer whatever the
    reason: whether an id exists in another account is not the importer's to learn)."""

    code = "import_id_refused"


# --- the job row -------------------------------------------------------------------------


def _detail(stored: str | None) -> dict[str, Any]:
    try:
        detail = json.loads(stored or "{}")
    except ValueError:
        detail = {}
    return detail if isinstance(detail, dict) else {}


def _stale(row: Any, now: datetime | None = None) -> bool:
    return bool(row.status == "running"
                and (now or datetime.now(UTC)) - row.updated_at > STALE_AFTER)


def job_view(row: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """A job row as the API shows it; a ``running`` job whose heartbeat stopped is failed."""
    detail = _detail(row.detail)
    status = row.status
    if _stale(row, now):
        status = "failed"
        detail["phase"] = "Failed"
        detail["error"] = {"code": "import_interrupted",
                           "message": "The import stopped before it finished (the server "
                                      "restarted); nothing of it was written.",
                           "hint": "Import the file again."}
    return {"id": str(row.id), "status": status, **detail,
            "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat()}


def _live() -> Any:
    return and_(jobs.c.kind == JOB_KIND, jobs.c.status == "running",
                jobs.c.updated_at > func.now() - STALE_AFTER)


@dataclass(frozen=True)
class Admission:
    max_running: int
    """Imports running at once on this deployment (all processes)."""
    bytes_per_day: int
    """Bytes one user may upload for imports in 24 hours."""


async def admit(main: AsyncEngine, user_id: str, rules: Admission) -> tuple[UUID, int]:
    """The new job's id and the bytes the user may still upload today, or a refusal:
    :class:`Conflict` (409) while the user has an import running, :class:`RateLimited`
    (429) once their allowance is used, :class:`ImportsBusy` (503) at the global cap."""
    async with main.begin() as conn:
        # One lock for every admission: the counts and the insert are one atomic step.
        await conn.execute(text("select pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                           {"k": "byodb-import-admission"})
        mine = (await conn.execute(select(jobs.c.id).where(
            _live(), jobs.c.user_id == user_id).limit(1))).first()
        if mine is not None:
            raise Conflict("Another import of yours is still running.",
                           hint=f"Wait until it finishes (GET /api/import/{mine.id}).")
        running = (await conn.execute(select(func.count()).select_from(jobs).where(
            _live()))).scalar_one()
        if running >= rules.max_running:
            raise ImportsBusy(f"The server is running {running} imports, as many as it "
                              "runs at once.", hint="Try again in a few minutes.")
        used = 0
        for (detail,) in (await conn.execute(select(jobs.c.detail).where(
                jobs.c.kind == JOB_KIND, jobs.c.user_id == user_id,
                jobs.c.created_at > func.now() - timedelta(days=1)))).all():
            size = _detail(detail).get("bytes", 0)
            used += size if isinstance(size, int) else 0
        if used >= rules.bytes_per_day:
            raise RateLimited(f"Your imports of the last 24 hours used your allowance of "
                              f"{rules.bytes_per_day} bytes.", hint="Try again tomorrow.")
        job_id = new_id()
        await conn.execute(jobs.insert().values(
            id=job_id, kind=JOB_KIND, user_id=user_id, status="running",
            detail=json.dumps({"phase": "Receiving", "bytes": 0, "bytes_checked": 0,
                               "bytes_total": 0, "total": 0, "written": 0})))
    return job_id, rules.bytes_per_day - used


async def update_job(main: AsyncEngine, job_id: UUID, changes: dict[str, Any], *,
                     status: str = "running") -> None:
    async with main.begin() as conn:
        row = (await conn.execute(select(jobs.c.detail).where(jobs.c.id == job_id)
                                  .with_for_update())).first()
        detail = _detail(row.detail) if row else {}
        detail.update(changes)
        await conn.execute(update(jobs).where(jobs.c.id == job_id).values(
            status=status, detail=json.dumps(detail), updated_at=func.now()))


async def fail_job(main: AsyncEngine, job_id: UUID, error: ByodbError,
                   changes: dict[str, Any] | None = None) -> None:
    await update_job(main, job_id, {**(changes or {}), "phase": "Failed", "error": {
        "code": error.code, "message": error.message, "hint": error.hint}}, status="failed")


async def get_job(main: AsyncEngine, user_id: str, job_id: UUID) -> dict[str, Any]:
    async with main.connect() as conn:
        row = (await conn.execute(select(jobs).where(
            jobs.c.id == job_id, jobs.c.user_id == user_id, jobs.c.kind == JOB_KIND))).first()
    if row is None:
        raise NotFound("import not found")
    return job_view(row)


async def list_jobs(main: AsyncEngine, user_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """The user's newest imports, newest first."""
    async with main.connect() as conn:
        rows = (await conn.execute(select(jobs).where(
            jobs.c.user_id == user_id, jobs.c.kind == JOB_KIND)
            .order_by(jobs.c.created_at.desc()).limit(limit))).all()
    return [job_view(r) for r in rows]


class JobReporter:
    """The job's progress, written to its row with a heartbeat every ``HEARTBEAT_S``
    (:meth:`run` as a task) and at once by :meth:`flush`."""

    def __init__(self, main: AsyncEngine, job_id: UUID) -> None:
        self.main = main
        self.job_id = job_id
        self._changes: dict[str, Any] = {}

    def set(self, **changes: Any) -> None:
        self._changes.update(changes)

    def take(self) -> dict[str, Any]:
        """The changes not written yet (they are the caller's to write now)."""
        changes, self._changes = self._changes, {}
        return changes

    async def flush(self) -> None:
        await update_job(self.main, self.job_id, self.take())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self.flush()
            except Exception:  # main unreachable for a moment: the next beat tries again
                log.warning("an import's heartbeat failed", exc_info=True)

    @contextlib.asynccontextmanager
    async def beating(self) -> AsyncIterator[JobReporter]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def recover(main: AsyncEngine, spool_root: Path) -> int:
    """After a start: every interrupted import is ``failed`` in its row, and every job
    directory under ``spool_root`` whose job is not running any more is removed (the
    number removed)."""
    async with main.begin() as conn:
        stale = (await conn.execute(select(jobs).where(
            jobs.c.kind == JOB_KIND, jobs.c.status == "running",
            jobs.c.updated_at <= func.now() - STALE_AFTER))).all()
        for row in stale:
            view = job_view(row)
            detail = {k: v for k, v in view.items()
                      if k not in ("id", "status", "created_at", "updated_at")}
            await conn.execute(update(jobs).where(jobs.c.id == row.id).values(
                status="failed", detail=json.dumps(detail), updated_at=func.now()))
        live = {str(r.id) for r in (await conn.execute(select(jobs.c.id).where(_live()))).all()}
    removed = 0
    if spool_root.is_dir():
        for entry in spool_root.iterdir():
            if entry.name not in live:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed


async def forget_refused(main: AsyncEngine, job_id: UUID) -> None:
    """A job refused before it was checked for lack of a file (a malformed request): its
    row goes, as if the request had never started one."""
    async with main.begin() as conn:
        await conn.execute(delete(jobs).where(jobs.c.id == job_id))


# --- the write phase ---------------------------------------------------------------------


Progress = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class ImportReport:
    rows: dict[str, int] = field(default_factory=dict)
    already_present: int = 0

    @property
    def created(self) -> int:
        return sum(self.rows.values()) - self.already_present


def _read_chunk(handle: IO[bytes], indexes: Sequence[int] | None) -> tuple[bytes, int]:
    """The next whole lines of a ``.copy`` file (about ``_CHUNK`` bytes), projected to
    ``indexes`` when given, and how many rows they are (runs on an I/O thread)."""
    data = handle.read(_CHUNK)
    if data and not data.endswith(b"\n"):
        data += handle.readline()
    rows = data.count(b"\n")
    if indexes is not None:
        data = project(data, indexes)
    return data, rows


async def write_import(router: Router, io_threads: IoThreads, user_id: str, spool: Path,
                       checked: Checked, *, timeout_s: float,
                       progress: Progress | None = None) -> ImportReport:
    """Stream the checked rows of ``spool`` into the user's content (module docstring,
    step 3)."""
    written = 0
    reported = 0

    async def feed(table: str, columns: tuple[str, ...]) -> AsyncIterator[bytes]:
        nonlocal written, reported
        spooled = checked.columns.get(table)
        if spooled is None:
            return
        missing = [c for c in columns if c not in spooled]
        if missing:  # cannot happen: the spool has every column the code knows
            raise ImportInvalid(f"{table}: no values for {', '.join(missing)}")
        indexes = None if columns == spooled else [spooled.index(c) for c in columns]
        handle = await io_threads.run((spool / f"{table}.copy").open, "rb")
        try:
            while True:
                data, rows = await io_threads.run(_read_chunk, handle, indexes)
                if not data:
                    return
                yield data
                written += rows
                if progress is not None and written - reported >= PROGRESS_EVERY:
                    reported = written
                    await progress({"phase": f"Writing {table}", "written": written})
        finally:
            await io_threads.run(handle.close)

    async def phase(message: str) -> None:
        if progress is not None:
            await progress({"phase": message, "written": written})

    try:
        async with router.connect(user_id, messages, timeout_s=timeout_s,
                                  file_bytes=checked.rows.get("files", 0) > 0) as routed:
            conn = await driver_connection(routed)
            # Merging a large file takes single statements longer than a request's.
            await conn.execute(sql.SQL("set local statement_timeout = {}").format(
                sql.Literal(max(1, round(timeout_s * 1000)))))
            schema = await deployed_schema(conn)
            version = schema.version if schema else CONTENT_SCHEMA_VERSION
            moved = await merge_rows(conn, user_id, feed, version=version, progress=phase)
    except MoveRefused as exc:
        raise refusal(exc) from None
    return ImportReport(rows={k: v for k, v in moved.rows.items() if v},
                        already_present=moved.merged)


_ID_REFUSALS = frozenset({"move_id_conflict", "move_foreign_rows"})
_TABLE = re.compile(r"\brows of ([a-z_]+)\b")


def refusal(exc: MoveRefused) -> ImportInvalid:
    """The merge's refusal as the import's. Every refusal about ids — rows that use ids of
    another account's rows, references to rows of another account, references to rows that
    exist nowhere — gets one answer, so a file cannot ask whether an id exists in someone
    else's content. Other refusals keep their own message."""
    if exc.code in _ID_REFUSALS or "exist nowhere" in exc.message:
        found = _TABLE.search(exc.message)
        table = found.group(1) if found and found.group(1) in content_table_names() \
            else "the file"
        return ImportRefused(f"rows of {table} use or refer to ids that are neither rows of "
                             "the file nor rows of your content; nothing was imported",
                             hint="Import an export made by the app you are leaving, "
                                  "unchanged.")
    return ImportInvalid(exc.message.replace("nothing was moved", "nothing was imported"),
                         hint="Nothing was imported.")


async def run_import(main: AsyncEngine, router: Router, io_threads: IoThreads, user_id: str,
                     job_id: UUID, spool: Path, checked: Checked, *,
                     timeout_s: float) -> None:
    """Write the import and record how it ended in its job row (never raises but for
    cancellation: the error is the job's outcome). The spool directory goes either way."""
    reporter = JobReporter(main, job_id)

    async def progress(changes: dict[str, Any]) -> None:
        reporter.set(**changes)

    try:
        async with reporter.beating():
            report = await asyncio.wait_for(
                write_import(router, io_threads, user_id, spool, checked,
                             timeout_s=timeout_s, progress=progress), timeout_s)
    except asyncio.CancelledError:
        # The process is stopping: the transaction was rolled back, nothing written.
        with contextlib.suppress(Exception):
            await asyncio.shield(fail_job(main, job_id, ByodbError(
                "The import stopped before it finished (the server stopped); nothing of it "
                "was written.", hint="Import the file again.", code="import_interrupted")))
        raise
    except TimeoutError:
        await fail_job(main, job_id, ByodbError(
            f"Writing the import took longer than its deadline ({timeout_s:.0f} s); nothing "
            "of it was written.", hint="Split the export into smaller files.",
            code="import_timeout"))
        return
    except ByodbError as exc:
        await fail_job(main, job_id, exc)
        return
    except Exception as exc:  # the job must end either way; the type says what, not content
        log.exception("an import failed unexpectedly")
        await fail_job(main, job_id, ByodbError(
            f"The import failed ({type(exc).__name__}); nothing of it was written.",
            hint="Try again later.", code="import_failed"))
        return
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    await update_job(main, job_id, {"phase": "Done", "written": sum(report.rows.values()),
                                    "result": {"rows": report.rows, "created": report.created,
                                               "already_present": report.already_present}},
                     status="completed")

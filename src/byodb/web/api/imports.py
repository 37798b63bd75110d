"""Imports (``POST /api/import``, ``GET /api/import``, ``GET /api/import/{id}``): a byodb,
ChatGPT or Claude export in — admitted before its first byte is read, spooled once,
checked whole in a worker process, then written in the background (docs/import.md)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, FastAPI, Request

from byodb.errors import ByodbError
from byodb.executors import ForkedWorkers, IoThreads
from byodb.runtime import Runtime
from byodb.services.portability import imports as import_service
from byodb.services.portability.archive import ImportLimits
from byodb.services.portability.check import (
    UPLOAD,
    Checked,
    CheckStopped,
    check_upload,
    read_progress,
)
from byodb.web.deps import PrincipalDep, RuntimeDep
from byodb.web.upload import receive_file, upload_schema

router = APIRouter(prefix="/api/import", tags=["portability"])

_KILL_GRACE_S = 30.0

_UPLOAD_SCHEMA = upload_schema(
    "A byodb export (.zip), a ChatGPT export (.zip or its conversations.json) or a Claude "
    "export's conversations.json; at most BYODB_MAX_IMPORT_BYTES.")


@dataclass
class Imports:
    """This process's import machinery: the worker processes that check uploads, the I/O
    threads that spool and stream them, the running write tasks, the spool directory."""

    workers: ForkedWorkers
    io_threads: IoThreads
    spool_root: Path
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @staticmethod
    def for_runtime(rt: Runtime) -> Imports:
        return Imports(
            workers=ForkedWorkers(rt.settings.import_workers),
            io_threads=IoThreads(2 + rt.settings.import_workers, name="byodb-import-io"),
            spool_root=rt.settings.data_dir.resolve() / "tmp" / "imports")


async def start_imports(app: FastAPI, rt: Runtime) -> None:
    """At start-up: the machinery, and what interrupted imports left behind cleaned up."""
    app.state.imports = Imports.for_runtime(rt)
    await import_service.recover(rt.main, app.state.imports.spool_root)


async def stop_imports(app: FastAPI) -> None:
    """At shutdown: running imports end ``failed`` (``import_interrupted``, nothing written),
    their files are removed, the workers stop."""
    imports: Imports | None = getattr(app.state, "imports", None)
    if imports is None:
        return
    for task in list(imports.tasks):
        task.cancel()
    for task in list(imports.tasks):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    imports.io_threads.close()


def _imports(request: Request) -> Imports:
    imports: Imports = request.app.state.imports
    return imports


async def _check(imports: Imports, spool: Path, user_id: str, limits: ImportLimits,
                 timeout_s: float, reporter: import_service.JobReporter) -> Checked:
    """Check the spooled upload in a worker process, its progress reported to the job (on
    cancellation the worker is killed)."""
    check = asyncio.ensure_future(imports.workers.run(
        check_upload, spool, user_id, limits, time.time() + timeout_s))
    # The worker stops itself at the deadline; past it and a grace, it is killed.
    give_up = time.monotonic() + timeout_s + _KILL_GRACE_S
    try:
        while True:
            done, _ = await asyncio.wait({check}, timeout=1.0)
            if done:
                break
            if time.monotonic() > give_up:
                raise CheckStopped("Checking the file took longer than its deadline; "
                                   "nothing was imported.",
                                   hint="Split the export into smaller files.")
            seen = read_progress(spool)
            if seen is not None:
                reporter.set(bytes_checked=seen[0], bytes_total=seen[1], total=seen[2])
    except BaseException:
        check.cancel()
        with contextlib.suppress(BaseException):
            await check
        raise
    outcome = check.result()
    if not isinstance(outcome, Checked):
        raise outcome.error()
    return outcome


@router.post("", status_code=202, openapi_extra=_UPLOAD_SCHEMA,
             responses={400: {"description": "import_unsafe_file"},
                        409: {"description": "conflict: another import of yours is running"},
                        413: {"description": "import_too_large / payload_too_large"},
                        422: {"description": "import_invalid, import_limit_exceeded: names "
                                             "the member, row or conversation, the limit "
                                             "and the place in it"},
                        429: {"description": "rate_limited: the day's upload allowance"},
                        503: {"description": "imports_busy: the server's cap of running "
                                             "imports"}})
async def start(request: Request, rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """Admit the import (before reading the upload), receive it, check every row with the
    API's limits, then write it in the background: the answer is the import's status
    (``GET /api/import/{id}``). A file that is not valid is refused here, its job ends
    ``failed`` with the same error, and nothing is written."""
    settings = rt.settings
    imports = _imports(request)
    job_id, allowance = await import_service.admit(rt.main, me.user_id, import_service.Admission(
        max_running=settings.max_running_imports, bytes_per_day=settings.import_bytes_per_day))
    limits = ImportLimits.for_upload(settings.max_import_bytes)
    spool = imports.spool_root / str(job_id)
    reporter = import_service.JobReporter(rt.main, job_id)
    try:
        async with reporter.beating():
            spool.mkdir(parents=True, exist_ok=False)

            def received(size: int) -> None:
                reporter.set(bytes=size)

            limit = min(limits.file_bytes, allowance)
            too_large = (f"an import may be at most {limits.file_bytes} bytes"
                         if limit == limits.file_bytes else
                         f"this upload is over what you may still import today ({allowance} "
                         "bytes)")
            # One deadline for receiving and checking the upload.
            deadline = time.monotonic() + settings.import_check_timeout_s
            try:
                size = await asyncio.wait_for(receive_file(
                    request, spool / UPLOAD, imports.io_threads, field="file", limit=limit,
                    too_large=too_large, progress=received), settings.import_check_timeout_s)
            except TimeoutError:
                raise CheckStopped("Receiving the file took longer than its deadline; "
                                   "nothing was imported.", hint="Try again on a faster "
                                   "connection, or split the export.") from None
            reporter.set(bytes=size, phase="Checking")
            await reporter.flush()
            checked = await _check(imports, spool, me.user_id, limits,
                                   deadline - time.monotonic(), reporter)
            (spool / UPLOAD).unlink()  # the checked rows are what the write phase reads
            reporter.set(phase="Queued", source=checked.kind, rows=checked.rows,
                         total=checked.total, bytes_checked=checked.bytes_read,
                         bytes_total=checked.bytes_read, written=0)
            await reporter.flush()
    except BaseException as exc:
        shutil.rmtree(spool, ignore_errors=True)
        error = exc if isinstance(exc, ByodbError) else ByodbError(
            "The import stopped before it was checked; nothing was imported.",
            code="import_interrupted")
        with contextlib.suppress(Exception):
            await asyncio.shield(import_service.fail_job(rt.main, job_id, error,
                                                         reporter.take()))
        raise
    task = asyncio.create_task(import_service.run_import(
        rt.main, rt.router, imports.io_threads, me.user_id, job_id, spool, checked,
        timeout_s=settings.move_timeout_s))
    imports.tasks.add(task)
    task.add_done_callback(imports.tasks.discard)
    return await import_service.get_job(rt.main, me.user_id, job_id)


@router.get("")
async def recent(rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """Your newest imports (at most 10), newest first, each as ``GET /api/import/{id}``
    shows it: a page can follow one that is still receiving or checking."""
    return {"items": await import_service.list_jobs(rt.main, me.user_id)}


@router.get("/{import_id}")
async def status(import_id: UUID, rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """``running`` (with ``phase``; ``bytes`` received, ``bytes_checked`` of
    ``bytes_total``, ``written`` of ``total`` rows), ``completed`` (with ``result``: rows
    per table, ``created``, ``already_present``) or ``failed`` (with ``error`` in the
    API's error shape)."""
    return await import_service.get_job(rt.main, me.user_id, import_id)

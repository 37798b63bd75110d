"""Imports (``POST /api/import``, ``GET /api/import/{id}``): a byodb, ChatGPT or Claude
export in, checked whole before anything is written, then written in the background."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from byodb.errors import InvalidInput
from byodb.runtime import Runtime
from byodb.services.portability import imports as import_service
from byodb.services.portability.archive import ImportLimits, ImportTooLarge
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/import", tags=["portability"])

_FORM_FIELDS = frozenset({"file"})
_CHUNK = 1024 * 1024

_UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "additionalProperties": False,
            "properties": {"file": {
                "type": "string", "format": "binary",
                "description": "A byodb export (.zip), a ChatGPT export (.zip or its "
                               "conversations.json) or a Claude export's conversations.json; "
                               "at most BYODB_MAX_IMPORT_BYTES."}},
        }}},
    },
}


def _stale_after(rt: Runtime) -> timedelta:
    # A running import reports at least once per deadline; past it, it is not running.
    return timedelta(seconds=rt.settings.move_timeout_s + 60)


def _tasks(request: Request) -> set[asyncio.Task[None]]:
    """Running imports of this process (held so they are not garbage-collected)."""
    tasks: set[asyncio.Task[None]] | None = getattr(request.app.state, "import_tasks", None)
    if tasks is None:
        tasks = set()
        request.app.state.import_tasks = tasks
    return tasks


async def _spool(upload: UploadFile, limit: int) -> Path:
    """The upload in a temporary file of its own (the form's is gone after the response)."""
    handle = tempfile.NamedTemporaryFile(prefix="byodb-import-", delete=False)  # noqa: SIM115
    path = Path(handle.name)
    size = 0
    try:
        with handle:
            while chunk := await upload.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ImportTooLarge(f"an import may be at most {limit} bytes")
                handle.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@router.post("", status_code=202, openapi_extra=_UPLOAD_SCHEMA,
             responses={400: {"description": "import_unsafe_file"},
                        409: {"description": "conflict: another import is running"},
                        413: {"description": "import_too_large"},
                        422: {"description": "import_invalid: names the member, line and "
                                             "field"}})
async def start(request: Request, rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """Check the whole file (every row with the API's limits), then write it in the
    background: the answer is the import's status (``GET /api/import/{id}``). A file that
    is not valid is refused here and nothing is written."""
    limits = ImportLimits.for_upload(rt.settings.max_import_bytes)
    async with request.form(max_files=1, max_fields=5,
                            max_part_size=1024 * 1024) as form:
        unknown = sorted(set(form.keys()) - _FORM_FIELDS)
        if unknown:
            raise InvalidInput(f"{unknown[0][:100]}: Extra inputs are not permitted")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("send the export as multipart/form-data in a field named file")
        path = await _spool(upload, limits.file_bytes)
    try:
        prepared = await asyncio.to_thread(import_service.prepare_import, path, me.user_id,
                                           limits)
        job = await import_service.start_job(rt.main, me.user_id, prepared,
                                             stale_after=_stale_after(rt))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    task = asyncio.create_task(import_service.run_import(
        rt.main, rt.router, me.user_id, UUID(job["id"]), prepared,
        timeout_s=rt.settings.move_timeout_s))
    tasks = _tasks(request)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return job


@router.get("/{import_id}")
async def status(import_id: UUID, rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """``running`` (with ``phase`` and ``written`` of ``total`` rows), ``completed`` (with
    ``result``: rows per table, ``created``, ``already_present``) or ``failed`` (with
    ``error`` in the API's error shape)."""
    return await import_service.get_job(rt.main, me.user_id, import_id,
                                        stale_after=_stale_after(rt))




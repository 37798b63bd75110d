"""Files (``/api/files``): the multipart upload and the download of the bytes (listing,
metadata and deleting are the declared content area ``areas.FILES``).

Uploads are limited to ``MAX_FILE_BYTES`` (10 MiB) while the body arrives: a bigger body
is refused with 413 before it is parsed or spooled to disk, whether or not it announced
its length.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile
from starlette.types import Message

from byodb.errors import InvalidInput
from byodb.services import files as file_service
from byodb.services.files import ALLOWED_TYPES, MAX_FILE_BYTES, too_large
from byodb.web.deps import PrincipalDep, RuntimeDep
from byodb.web.upload import upload_schema

router = APIRouter(prefix="/api/files", tags=["files"])

# Multipart framing (boundaries, part headers) on top of the file itself.
_ENVELOPE_BYTES = 64 * 1024
# The upload's only form field; any other is refused (422), as in the JSON routes.
_FORM_FIELDS = frozenset({"file"})
_MAX_NAME_SHOWN = 100

_UPLOAD_SCHEMA = upload_schema(
    f"Allowed types: {', '.join(ALLOWED_TYPES)}; at most {MAX_FILE_BYTES} bytes.")


def _limited(request: Request, limit: int) -> Request:
    """The same request, whose body stops with 413 once it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large()
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise too_large()
        return message

    return Request(request.scope, receive)


@router.post("", status_code=201, openapi_extra=_UPLOAD_SCHEMA)
async def upload(request: Request, rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """Upload one file in the multipart field ``file``. Text types are chunked and indexed
    for semantic search; PDFs and images are stored only. 415 for other types, 413 above
    the size limit."""
    limited = _limited(request, MAX_FILE_BYTES + _ENVELOPE_BYTES)
    async with limited.form(max_files=1, max_fields=5) as form:
        # Like every request model (``RequestModel``): a field other than ``file`` is
        # refused, not ignored.
        unknown = sorted(set(form.keys()) - _FORM_FIELDS)
        if unknown:
            raise InvalidInput(f"{unknown[0][:_MAX_NAME_SHOWN]}: Extra inputs are not "
                               "permitted")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("send the file as multipart/form-data in a field named file")
        data = await upload.read(MAX_FILE_BYTES + 1)
        return await file_service.upload_file(
            rt.router, rt.embedder, me.user_id, filename=upload.filename,
            declared_type=upload.content_type, data=data)


@router.get("/{file_id}/content", response_class=Response,
            responses={200: {"content": {t: {} for t in ALLOWED_TYPES}}})
async def content(file_id: UUID, rt: RuntimeDep, me: PrincipalDep) -> Response:
    """The file's bytes with its stored type. Images and plain text open in the browser;
    everything else downloads."""
    meta, data = await file_service.read_file_content(rt.router, me.user_id, file_id)
    media_type = meta["mime_type"]
    disposition = "inline" if media_type.startswith("image/") or \
        media_type == "text/plain" else "attachment"
    headers = {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(meta['filename'])}",
        # The bytes are the user's; never let a browser reinterpret or run them.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, no-store",
    }
    if media_type.startswith("text/") or media_type == "application/json":
        media_type += "; charset=utf-8"
    return Response(content=data, media_type=media_type, headers=headers)

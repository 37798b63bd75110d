"""Export (``GET /api/export``): everything the signed-in user owns, as a streamed zip."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from byodb.services.portability.export import Contents, check_readable, export_archive
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api", tags=["portability"])


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}},
                             "description": "The export archive (docs/export-format.md)."},
                       503: {"description": "byod_unavailable: the user's database cannot "
                                            "be read now"}})
async def export(rt: RuntimeDep, me: PrincipalDep,
                 include: Annotated[Contents, Query(
                     description="``all`` (default): tables, files, conversations.json and "
                                 "Markdown; ``tables``: the lossless tables and files only "
                                 "(all an import needs, made faster)")] = Contents.all
                 ) -> StreamingResponse:
    """A zip of every row the user owns (tables as JSON lines), their files' bytes, their
    conversations in ChatGPT's ``conversations.json`` layout and as Markdown, and a
    manifest with each file's SHA-256. Streamed: the download starts at once. It runs
    under ``BYODB_EXPORT_TIMEOUT``; one that fails after the download started ends with
    ``EXPORT-INCOMPLETE.txt`` (why) and no manifest (docs/export-format.md)."""
    # Errors the user can act on (their database is unavailable) come as the usual JSON
    # 503 before the response starts; after that the archive is being sent.
    await check_readable(rt.router, me.user_id)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        export_archive(rt.router, me.user_id, timeout_s=rt.settings.export_timeout_s,
                       contents=include),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="byodb-export-{stamp}.zip"',
                 "Cache-Control": "private, no-store"})

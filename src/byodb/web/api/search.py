"""Search over the signed-in user's content (``/api/search``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from byodb.services import search as search_service
from byodb.services.search import MAX_QUERY_CHARS, MAX_RESULTS
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/search", tags=["search"])


@router.get("")
async def search(rt: RuntimeDep, me: PrincipalDep,
                 q: str = Query(..., max_length=MAX_QUERY_CHARS,
                                description="Words to find; quotes, OR and -word work in text "
                                            "mode (websearch syntax)."),
                 mode: Literal["text", "semantic"] = "text",
                 limit: int = Query(20, ge=1, le=MAX_RESULTS)) -> dict[str, Any]:
    """Ranked hits: ``{"items": [{"type", "id", "snippet", "score", "conversation_id"?,
    "file_id"?, "title"?}]}``. ``text`` searches conversation titles, messages, notes and
    memories by words; ``semantic`` compares meaning (embeddings) with messages, memories
    and file chunks. Snippets are plain text."""
    items = await search_service.search(rt.router, rt.embedder, me.user_id, q, mode=mode,
                                        limit=limit)
    return {"items": items}

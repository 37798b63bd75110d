"""Memories: what the assistant keeps about the user (``/api/memories``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import Field

from byodb.assistant.extraction import MAX_MEMORY_CHARS
from byodb.services import memories as memory_service
from byodb.services.memories import MAX_CATEGORY_CHARS
from byodb.web.api.models import RequestModel
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/memories", tags=["memories"])


class NewMemory(RequestModel):
    content: str = Field(..., min_length=1, max_length=MAX_MEMORY_CHARS)
    category: str | None = Field(None, max_length=MAX_CATEGORY_CHARS)
    importance: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)


class MemoryChanges(RequestModel):
    content: str | None = Field(None, min_length=1, max_length=MAX_MEMORY_CHARS)
    category: str | None = Field(None, max_length=MAX_CATEGORY_CHARS)
    importance: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    is_active: bool | None = None


@router.post("", status_code=201)
async def create(body: NewMemory, rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """A memory written by the user (``source = "manual"``), embedded for retrieval."""
    return await memory_service.create_memory(
        rt.router, rt.embedder, me.user_id, content=body.content, category=body.category,
        importance=body.importance)


@router.get("")
async def list_(rt: RuntimeDep, me: PrincipalDep, active: bool | None = None,
                category: str | None = Query(None, max_length=MAX_CATEGORY_CHARS),
                limit: int = Query(50, ge=1, le=200)) -> dict[str, Any]:
    """Newest first; ``active`` and ``category`` filter (both optional)."""
    items = await memory_service.list_memories(rt.router, me.user_id, active=active,
                                               category=category, limit=limit)
    return {"items": items}


@router.get("/{memory_id}")
async def get(memory_id: UUID, rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    return await memory_service.get_memory(rt.router, me.user_id, memory_id)


@router.patch("/{memory_id}")
async def update(memory_id: UUID, body: MemoryChanges, rt: RuntimeDep,
                 me: PrincipalDep) -> dict[str, Any]:
    """Change the content (re-embedded), category, importance (0..1, null clears) or
    ``is_active`` (an inactive memory is kept but not used)."""
    return await memory_service.update_memory(
        rt.router, rt.embedder, me.user_id, memory_id, body.model_dump(exclude_unset=True))


@router.delete("/{memory_id}", status_code=204)
async def delete(memory_id: UUID, rt: RuntimeDep, me: PrincipalDep) -> Response:
    await memory_service.delete_memory(rt.router, me.user_id, memory_id)
    return Response(status_code=204)

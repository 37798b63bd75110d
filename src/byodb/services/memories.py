"""Memories: create, list (active/category filters), get, update, delete — each with its
embedding, computed before the transaction (no connection is held while a model works) and
stored with the row, on the database that holds the user's content."""

from __future__ import annotations

import math
from typing import Any
from uuid import UUID

from sqlalchemy import delete, select, update
from sqlalchemy.sql import func

from byodb.assistant.embeddings import EmbeddingModel, embed_texts, is_zero
from byodb.assistant.extraction import MAX_MEMORY_CHARS
from byodb.content.limits import MAX_LIST_LIMIT
from byodb.content.tables import memories
from byodb.errors import InvalidInput, NotFound
from byodb.ids import new_id
from byodb.routing import Router
from byodb.services.embedding_stamp import embedding_stamp
from byodb.services.rows import Reader, public_columns

_READER = Reader.of(public_columns(memories))
_COLUMNS = _READER.columns
MAX_CATEGORY_CHARS = 100
_CHANGEABLE = frozenset({"content", "category", "importance", "is_active"})


def check_content(content: object) -> str:
    if not isinstance(content, str) or not content.strip():
        raise InvalidInput("memory content is empty")
    content = content.strip()
    if len(content) > MAX_MEMORY_CHARS:
        raise InvalidInput(f"memory content is longer than {MAX_MEMORY_CHARS} characters")
    return content


def check_category(category: object) -> str | None:
    if category is None:
        return None
    if not isinstance(category, str):
        raise InvalidInput("category must be text")
    category = category.strip()
    if len(category) > MAX_CATEGORY_CHARS:
        raise InvalidInput(f"category is longer than {MAX_CATEGORY_CHARS} characters")
    return category or None


def check_importance(importance: object) -> float | None:
    if importance is None:
        return None
    if isinstance(importance, bool) or not isinstance(importance, (int, float)) \
            or not math.isfinite(importance) or not 0.0 <= importance <= 1.0:
        raise InvalidInput("importance must be a number from 0 to 1")
    return float(importance)


async def embedding_of(embedder: EmbeddingModel, content: str) -> list[float] | None:
    """The stored embedding of ``content``; NULL for a text without features (a zero vector
    has no cosine distance and the HNSW index skips it anyway)."""
    vector = (await embed_texts(embedder, [content]))[0]
    return None if is_zero(vector) else vector


async def create_memory(router: Router, embedder: EmbeddingModel, user_id: str, *,
                        content: str, category: str | None = None,
                        importance: float | None = None) -> dict[str, Any]:
    """A memory the user wrote themselves (``source = 'manual'``)."""
    content = check_content(content)
    values = {"id": new_id(), "user_id": user_id, "content": content,
              "category": check_category(category), "importance": check_importance(importance),
              "source": "manual", "embedding": await embedding_of(embedder, content)}
    stamp = await embedding_stamp(router, user_id, memories, embedder)
    values.update(stamp.next_to(values["embedding"]))
    async with router.connect(user_id, memories) as conn:
        row = (await conn.execute(memories.insert().values(**values)
                                  .returning(*_COLUMNS))).one()
    return _READER.read(row)


async def list_memories(router: Router, user_id: str, *, active: bool | None = None,
                        category: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first."""
    limit = max(1, min(limit, MAX_LIST_LIMIT))
    query = select(*_COLUMNS).where(memories.c.user_id == user_id)
    if active is not None:
        query = query.where(memories.c.is_active.is_(active))
    if category is not None:
        query = query.where(memories.c.category == category)
    query = query.order_by(memories.c.created_at.desc(), memories.c.id.desc()).limit(limit)
    async with router.connect(user_id, memories) as conn:
        rows = (await conn.execute(query)).all()
    return [_READER.read(r) for r in rows]


async def get_memory(router: Router, user_id: str, memory_id: UUID) -> dict[str, Any]:
    async with router.connect(user_id, memories) as conn:
        row = (await conn.execute(select(*_COLUMNS).where(
            memories.c.id == memory_id, memories.c.user_id == user_id))).first()
    if row is None:
        raise NotFound("memory not found")
    return _READER.read(row)


async def update_memory(router: Router, embedder: EmbeddingModel, user_id: str,
                        memory_id: UUID, changes: dict[str, Any]) -> dict[str, Any]:
    """Change content (re-embedded), category, importance or the active flag."""
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    if "content" in changes:
        values["content"] = check_content(changes["content"])
        values["embedding"] = await embedding_of(embedder, values["content"])
        stamp = await embedding_stamp(router, user_id, memories, embedder)
        values.update(stamp.next_to(values["embedding"]))
    if "category" in changes:
        values["category"] = check_category(changes["category"])
    if "importance" in changes:
        values["importance"] = check_importance(changes["importance"])
    if "is_active" in changes:
        if not isinstance(changes["is_active"], bool):
            raise InvalidInput("is_active must be true or false")
        values["is_active"] = changes["is_active"]
    async with router.connect(user_id, memories) as conn:
        row = (await conn.execute(
            update(memories)
            .where(memories.c.id == memory_id, memories.c.user_id == user_id)
            .values(**values, updated_at=func.now())
            .returning(*_COLUMNS))).first()
        if row is None:
            raise NotFound("memory not found")
        # Before the commit: an update answered with an error must not have happened.
        return _READER.read(row)


async def delete_memory(router: Router, user_id: str, memory_id: UUID) -> None:
    async with router.connect(user_id, memories) as conn:
        deleted = (await conn.execute(
            delete(memories)
            .where(memories.c.id == memory_id, memories.c.user_id == user_id)
            .returning(memories.c.id))).first()
    if deleted is None:
        raise NotFound("memory not found")

"""What happens after each exchange (a user message and the assistant's reply are stored):
the two messages get their embeddings, and memories found in the exchange are stored with
``source = 'extracted'`` and the ids they came from — never twice.

``send_message`` hands :func:`after_exchange` to the process's
:class:`~byodb.services.after_work.AfterWork` once the reply is stored: it is enrichment,
not the exchange itself, so the reply never waits for it, and a failure is logged there (by
kind, never with content) instead of failing the user's request.
"""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from byodb.assistant.chat import ChatModel
from byodb.assistant.embeddings import EmbeddingModel, embed_texts, is_zero
from byodb.assistant.extraction import (
    MAX_MEMORY_CHARS,
    MemoryCandidate,
    candidates_of,
    memory_extractor_for,
    normalise_memory,
)
from byodb.content.tables import conversations, memories, messages
from byodb.ids import new_id
from byodb.routing import Router
from byodb.services.embedding_stamp import EmbeddingStamp, embedding_stamp


def _memory_lock_key(user_id: str) -> int:
    """Serialises extraction per user, so two exchanges at once cannot both insert the same
    new memory (the duplicate check and the insert are two statements)."""
    digest = hashlib.sha256(b"byodb-memories:" + user_id.encode()).digest()[:8]
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


async def after_exchange(router: Router, model: ChatModel, embedder: EmbeddingModel,
                         user_id: str, conversation_id: UUID, user_message: dict[str, Any],
                         assistant_message: dict[str, Any]) -> None:
    """Embed both messages and store the memories the exchange reveals."""
    stored = [m for m in (user_message, assistant_message) if m.get("content")]
    candidates = candidates_of(await memory_extractor_for(model).extract(
        user_message.get("content") or "", assistant_message.get("content") or ""))
    # Everything the models do happens before the transaction: no connection waits on them.
    vectors = await embed_texts(embedder, [m["content"] for m in stored]
                                + [c.content for c in candidates])
    message_vectors, memory_vectors = vectors[:len(stored)], vectors[len(stored):]
    message_stamp = await embedding_stamp(router, user_id, messages, embedder)
    memory_stamp = await embedding_stamp(router, user_id, memories, embedder)
    async with router.connect(user_id, messages) as conn:
        for message, vector in zip(stored, message_vectors, strict=True):
            if is_zero(vector):
                continue
            await conn.execute(
                update(messages)
                .where(messages.c.id == UUID(message["id"]), messages.c.user_id == user_id)
                .values(embedding=vector, **message_stamp.next_to(vector)))
        if candidates:
            await _store_new_memories(conn, user_id, conversation_id,
                                      UUID(user_message["id"]), candidates, memory_vectors,
                                      memory_stamp)


async def _store_new_memories(conn: AsyncConnection, user_id: str, conversation_id: UUID,
                              message_id: UUID, candidates: list[MemoryCandidate],
                              vectors: list[list[float]], stamp: EmbeddingStamp) -> int:
    """Insert the candidates the user has no memory of yet (active or not: a memory the
    user switched off must not come back by itself). Returns how many were stored."""
    await conn.execute(text("select pg_advisory_xact_lock(:k)"),
                       {"k": _memory_lock_key(user_id)})
    # Narrow with the full-text index (an exact duplicate has the same lexemes), then
    # compare in Python: normalising in SQL would depend on the user's server locale.
    keys = [normalise_memory(c.content) for c in candidates]
    same_words = or_(*(memories.c.content_tsv.op("@@")(
        func.plainto_tsquery("english", c.content)) for c in candidates))
    # Candidates have at most MAX_MEMORY_CHARS, so a longer stored memory (the owner's own
    # edit) is no duplicate of one: its prefix is all this needs to load.
    stored_content = func.left(memories.c.content, MAX_MEMORY_CHARS + 1)
    known = {normalise_memory(content) for content in (await conn.execute(
        select(stored_content).where(memories.c.user_id == user_id, same_words)
    )).scalars()}
    # The exchange may have been deleted since the reply (this runs after it): the memory
    # is kept without its source then, as when the source is deleted later (SET NULL).
    source_conversation = select(conversations.c.id).where(
        conversations.c.id == conversation_id, conversations.c.user_id == user_id
    ).scalar_subquery()
    source_message = select(messages.c.id).where(
        messages.c.id == message_id, messages.c.user_id == user_id).scalar_subquery()
    stored = 0
    for candidate, key, vector in zip(candidates, keys, vectors, strict=True):
        if key in known:
            continue
        known.add(key)
        embedding = None if is_zero(vector) else vector
        await conn.execute(memories.insert().values(
            id=new_id(), user_id=user_id, content=candidate.content,
            category=candidate.category, importance=candidate.importance,
            source="extracted", source_conversation_id=source_conversation,
            source_message_id=source_message, embedding=embedding,
            **stamp.next_to(embedding)))
        stored += 1
    return stored

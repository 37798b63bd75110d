"""Memories: facts the assistant keeps about the user, for retrieval (seeds: memories.ts)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Double, Index, Table, Text

from byodb.content.tables._base import (
    created_at_column,
    embedding_column,
    embedding_model_column,
    enum_check,
    fk_column,
    flag_column,
    gin_index,
    hnsw_cosine_index,
    id_column,
    metadata,
    tsvector_column,
    updated_at_column,
    user_id_column,
)

MEMORY_SOURCES: tuple[str, ...] = ("extracted", "manual", "imported")

memories = Table(
    "memories",
    metadata,
    id_column(),
    user_id_column(),
    Column("content", Text, nullable=False),
    Column("category", Text),
    Column("source", Text),
    # A memory outlives the conversation or message it was extracted from.
    fk_column("source_conversation_id", "conversations", ondelete="SET NULL", nullable=True),
    fk_column("source_message_id", "messages", ondelete="SET NULL", nullable=True),
    Column("importance", Double),
    embedding_column(),
    flag_column("is_active", default=True),
    created_at_column(),
    updated_at_column(),
    tsvector_column("content_tsv", "content"),
    embedding_model_column(),  # version 2
    enum_check("source", MEMORY_SOURCES),
    CheckConstraint("importance BETWEEN 0 AND 1", name="importance_range"),
    Index("ix_memories_user", "user_id"),
    Index("ix_memories_user_active", "user_id", "is_active"),
    Index("ix_memories_user_category", "user_id", "category"),
    Index("ix_memories_source_conversation", "source_conversation_id"),
    Index("ix_memories_source_message", "source_message_id"),
    gin_index("ix_memories_search_content", "content_tsv"),
    hnsw_cosine_index("memories"),
)

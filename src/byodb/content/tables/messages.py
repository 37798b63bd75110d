"""Messages and what hangs off them: tool calls, sources, attachments (seeds: messages.ts)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from byodb.content.tables._base import (
    counter_column,
    created_at_column,
    embedding_column,
    embedding_model_column,
    enum_check,
    fk_column,
    gin_index,
    hnsw_cosine_index,
    id_column,
    metadata,
    optional_timestamp_column,
    tsvector_column,
    updated_at_column,
    user_id_column,
)

MESSAGE_ROLES: tuple[str, ...] = ("user", "assistant", "system")
MESSAGE_STATUSES: tuple[str, ...] = ("pending", "generating", "complete", "error", "stopped")
TOOL_CALL_STATUSES: tuple[str, ...] = ("pending", "complete", "error")

messages = Table(
    "messages",
    metadata,
    id_column(),
    fk_column("conversation_id", "conversations", ondelete="CASCADE"),
    user_id_column(),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("model", Text),
    # Generation state; NULL status is allowed as in the seeds (optional field).
    Column("status", Text),
    Column("partial_content", Text),
    Column("error", Text),
    optional_timestamp_column("generation_started_at"),
    optional_timestamp_column("generation_completed_at"),
    # Token figures and cost are measurements known only after a generation, so NULL
    # ("not measured") stays distinct from 0. numeric keeps cost exact when summed.
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cost", Numeric),
    # Branching: deleting a parent keeps its branches, detached.
    fk_column("parent_message_id", "messages", ondelete="SET NULL", nullable=True),
    counter_column("branch_index"),
    Column("metadata", JSONB),
    embedding_column(),
    created_at_column(),
    updated_at_column(),
    tsvector_column("content_tsv", "content"),
    embedding_model_column(),  # version 2
    enum_check("role", MESSAGE_ROLES),
    enum_check("status", MESSAGE_STATUSES),
    Index("ix_messages_conversation", "conversation_id"),
    Index("ix_messages_conversation_created", "conversation_id", "created_at"),
    Index("ix_messages_user", "user_id"),
    Index("ix_messages_parent", "parent_message_id"),
    Index("ix_messages_status", "status"),
    gin_index("ix_messages_search_content", "content_tsv"),
    hnsw_cosine_index("messages"),
)

tool_calls = Table(
    "tool_calls",
    metadata,
    id_column(),
    fk_column("message_id", "messages", ondelete="CASCADE"),
    user_id_column(),
    Column("tool_name", Text, nullable=False),
    Column("tool_args", JSONB, nullable=False),
    Column("result", JSONB),
    Column("status", Text, nullable=False),
    Column("error", Text),
    created_at_column(),
    enum_check("status", TOOL_CALL_STATUSES),
    Index("ix_tool_calls_message", "message_id"),
    Index("ix_tool_calls_user", "user_id"),
)

sources = Table(
    "sources",
    metadata,
    id_column(),
    fk_column("message_id", "messages", ondelete="CASCADE"),
    user_id_column(),
    Column("url", Text, nullable=False),
    Column("title", Text),
    Column("snippet", Text),
    created_at_column(),
    Index("ix_sources_message", "message_id"),
    Index("ix_sources_user", "user_id"),
)

# The seeds' storageId pointed at Convex file storage; the bytes now live in the row
# (content), like files.content, so the user's database holds everything.
attachments = Table(
    "attachments",
    metadata,
    id_column(),
    fk_column("message_id", "messages", ondelete="CASCADE"),
    user_id_column(),
    Column("filename", Text, nullable=False),
    Column("mime_type", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("url", Text),
    Column("content", LargeBinary),
    created_at_column(),
    CheckConstraint("size >= 0", name="size_not_negative"),
    Index("ix_attachments_message", "message_id"),
    Index("ix_attachments_user", "user_id"),
)

"""Conversations and their participants (seeds: schema/conversations.ts)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, Text, UniqueConstraint

from byodb.content.tables._base import (
    counter_column,
    created_at_column,
    enum_check,
    fk_column,
    flag_column,
    gin_index,
    id_column,
    metadata,
    optional_timestamp_column,
    timestamp_column,
    tsvector_column,
    updated_at_column,
    user_id_column,
)

PARTICIPANT_ROLES: tuple[str, ...] = ("owner", "collaborator", "viewer")

conversations = Table(
    "conversations",
    metadata,
    id_column(),
    user_id_column(),
    Column("title", Text),
    Column("model", Text),
    Column("system_prompt", Text),
    flag_column("is_archived"),
    flag_column("is_pinned"),
    optional_timestamp_column("last_message_at"),
    counter_column("message_count"),
    created_at_column(),
    updated_at_column(),
    tsvector_column("title_tsv", "title"),
    Index("ix_conversations_user", "user_id"),
    Index("ix_conversations_user_archived", "user_id", "is_archived"),
    Index("ix_conversations_user_pinned", "user_id", "is_pinned"),
    Index("ix_conversations_user_last_message", "user_id", "last_message_at"),
    gin_index("ix_conversations_search_title", "title_tsv"),
)

# user_id is the conversation owner's subject (uniform tenant scope); member_id is the
# participant's subject (the seeds' clerkId).
conversation_participants = Table(
    "conversation_participants",
    metadata,
    id_column(),
    user_id_column(),
    fk_column("conversation_id", "conversations", ondelete="CASCADE"),
    Column("member_id", Text, nullable=False),
    Column("role", Text, nullable=False),
    timestamp_column("joined_at"),
    enum_check("role", PARTICIPANT_ROLES),
    # Replaces the seeds' by_conversation_user index: same columns, and a member
    # joins a conversation once.
    UniqueConstraint("conversation_id", "member_id"),
    Index("ix_conversation_participants_user", "user_id"),
    Index("ix_conversation_participants_conversation", "conversation_id"),
    Index("ix_conversation_participants_member", "member_id"),
)

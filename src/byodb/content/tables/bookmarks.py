"""Bookmarks on messages and saved snippets (seeds: bookmarks.ts)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, Text

from byodb.content.tables._base import (
    created_at_column,
    fk_column,
    id_column,
    metadata,
    updated_at_column,
    user_id_column,
)

bookmarks = Table(
    "bookmarks",
    metadata,
    id_column(),
    user_id_column(),
    # A bookmark means nothing without its message.
    fk_column("message_id", "messages", ondelete="CASCADE"),
    fk_column("conversation_id", "conversations", ondelete="CASCADE"),
    Column("note", Text),
    created_at_column(),
    Index("ix_bookmarks_user", "user_id"),
    Index("ix_bookmarks_message", "message_id"),
    Index("ix_bookmarks_conversation", "conversation_id"),
)

snippets = Table(
    "snippets",
    metadata,
    id_column(),
    user_id_column(),
    Column("title", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("language", Text),
    # A saved snippet is a copy the user keeps; it survives its source message.
    fk_column("source_message_id", "messages", ondelete="SET NULL", nullable=True),
    created_at_column(),
    updated_at_column(),
    Index("ix_snippets_user", "user_id"),
    Index("ix_snippets_source", "source_message_id"),
)

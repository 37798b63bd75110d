"""Tags and their junctions to conversations, notes and tasks (seeds: tags.ts)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, Text, UniqueConstraint, func, literal_column

from byodb.content.tables._base import (
    created_at_column,
    enum_check,
    fk_column,
    id_column,
    metadata,
    user_id_column,
)

TAG_SCOPES: tuple[str, ...] = ("user", "global")

tags = Table(
    "tags",
    metadata,
    id_column(),
    user_id_column(),
    Column("name", Text, nullable=False),
    Column("color", Text),
    Column("scope", Text, nullable=False),
    created_at_column(),
    enum_check("scope", TAG_SCOPES),
    Index("ix_tags_user", "user_id"),
    Index("ix_tags_name", "name"),
    # Version 2: a tag name is unique per user, ignoring case, as the services enforce
    # (they store names trimmed); the index makes it hold under concurrent writes too.
    # A unique index, not a constraint: a constraint cannot hold an expression.
    Index("uq_tags_user_lower_name", "user_id", func.lower(literal_column("name")),
          unique=True),
)

conversation_tags = Table(
    "conversation_tags",
    metadata,
    id_column(),
    fk_column("conversation_id", "conversations", ondelete="CASCADE"),
    fk_column("tag_id", "tags", ondelete="CASCADE"),
    user_id_column(),
    created_at_column(),
    UniqueConstraint("conversation_id", "tag_id"),
    Index("ix_conversation_tags_user", "user_id"),
    Index("ix_conversation_tags_conversation", "conversation_id"),
    Index("ix_conversation_tags_tag", "tag_id"),
)

note_tags = Table(
    "note_tags",
    metadata,
    id_column(),
    fk_column("note_id", "notes", ondelete="CASCADE"),
    fk_column("tag_id", "tags", ondelete="CASCADE"),
    user_id_column(),
    created_at_column(),
    UniqueConstraint("note_id", "tag_id"),
    Index("ix_note_tags_user", "user_id"),
    Index("ix_note_tags_note", "note_id"),
    Index("ix_note_tags_tag", "tag_id"),
)

task_tags = Table(
    "task_tags",
    metadata,
    id_column(),
    fk_column("task_id", "tasks", ondelete="CASCADE"),
    fk_column("tag_id", "tags", ondelete="CASCADE"),
    user_id_column(),
    created_at_column(),
    UniqueConstraint("task_id", "tag_id"),
    Index("ix_task_tags_user", "user_id"),
    Index("ix_task_tags_task", "task_id"),
    Index("ix_task_tags_tag", "tag_id"),
)

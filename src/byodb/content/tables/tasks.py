"""Tasks: the user's to-dos, possibly extracted from a conversation (seeds: tasks.ts)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, Text

from byodb.content.tables._base import (
    created_at_column,
    enum_check,
    fk_column,
    id_column,
    metadata,
    optional_timestamp_column,
    updated_at_column,
    user_id_column,
)

TASK_STATUSES: tuple[str, ...] = ("todo", "in_progress", "done", "cancelled")
TASK_PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "urgent")

tasks = Table(
    "tasks",
    metadata,
    id_column(),
    user_id_column(),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("status", Text, nullable=False),
    Column("priority", Text),
    optional_timestamp_column("due_date"),
    optional_timestamp_column("completed_at"),
    # A task outlives the conversation or message it came from.
    fk_column("source_conversation_id", "conversations", ondelete="SET NULL", nullable=True),
    fk_column("source_message_id", "messages", ondelete="SET NULL", nullable=True),
    created_at_column(),
    updated_at_column(),
    enum_check("status", TASK_STATUSES),
    enum_check("priority", TASK_PRIORITIES),
    Index("ix_tasks_user", "user_id"),
    Index("ix_tasks_user_status", "user_id", "status"),
    Index("ix_tasks_user_due", "user_id", "due_date"),
    Index("ix_tasks_source_conversation", "source_conversation_id"),
    Index("ix_tasks_source_message", "source_message_id"),
)

"""Projects and what they group: conversations, notes, files (seeds: projects.ts).

The junction tables carry ``user_id`` (the owner, for tenant scoping and data moves) as
well as the seeds' ``added_by`` (who added the item), and a UNIQUE pair.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, Text, UniqueConstraint

from byodb.content.tables._base import (
    created_at_column,
    fk_column,
    flag_column,
    id_column,
    metadata,
    timestamp_column,
    updated_at_column,
    user_id_column,
)

projects = Table(
    "projects",
    metadata,
    id_column(),
    user_id_column(),
    Column("name", Text, nullable=False),
    Column("description", Text),
    Column("color", Text),
    Column("icon", Text),
    flag_column("is_archived"),
    created_at_column(),
    updated_at_column(),
    Index("ix_projects_user", "user_id"),
    Index("ix_projects_user_archived", "user_id", "is_archived"),
)

project_conversations = Table(
    "project_conversations",
    metadata,
    id_column(),
    user_id_column(),
    fk_column("project_id", "projects", ondelete="CASCADE"),
    fk_column("conversation_id", "conversations", ondelete="CASCADE"),
    timestamp_column("added_at"),
    Column("added_by", Text, nullable=False),
    # Replaces the seeds' by_project_conversation index (same columns).
    UniqueConstraint("project_id", "conversation_id"),
    Index("ix_project_conversations_user", "user_id"),
    Index("ix_project_conversations_project", "project_id"),
    Index("ix_project_conversations_conversation", "conversation_id"),
)

project_notes = Table(
    "project_notes",
    metadata,
    id_column(),
    user_id_column(),
    fk_column("project_id", "projects", ondelete="CASCADE"),
    fk_column("note_id", "notes", ondelete="CASCADE"),
    timestamp_column("added_at"),
    Column("added_by", Text, nullable=False),
    UniqueConstraint("project_id", "note_id"),
    Index("ix_project_notes_user", "user_id"),
    Index("ix_project_notes_project", "project_id"),
    Index("ix_project_notes_note", "note_id"),
)

project_files = Table(
    "project_files",
    metadata,
    id_column(),
    user_id_column(),
    fk_column("project_id", "projects", ondelete="CASCADE"),
    fk_column("file_id", "files", ondelete="CASCADE"),
    timestamp_column("added_at"),
    Column("added_by", Text, nullable=False),
    UniqueConstraint("project_id", "file_id"),
    Index("ix_project_files_user", "user_id"),
    Index("ix_project_files_project", "project_id"),
    Index("ix_project_files_file", "file_id"),
)

"""Notes: the user's markdown notes (seeds: notes.ts)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, Text

from byodb.content.tables._base import (
    created_at_column,
    flag_column,
    gin_index,
    id_column,
    metadata,
    tsvector_column,
    updated_at_column,
    user_id_column,
)

notes = Table(
    "notes",
    metadata,
    id_column(),
    user_id_column(),
    Column("title", Text, nullable=False),
    Column("content", Text, nullable=False),  # Markdown
    flag_column("is_pinned"),
    flag_column("is_archived"),
    created_at_column(),
    updated_at_column(),
    # The seeds searched content only; a note found by its title is what users expect.
    tsvector_column("content_tsv", "title", "content"),
    Index("ix_notes_user", "user_id"),
    Index("ix_notes_user_pinned", "user_id", "is_pinned"),
    Index("ix_notes_user_archived", "user_id", "is_archived"),
    gin_index("ix_notes_search_content", "content_tsv"),
)

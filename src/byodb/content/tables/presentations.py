"""Presentations: decks, slides, outlines, design templates, sessions (seeds: presentations.ts).

The seeds' ``order`` column is named ``position`` here: ORDER is a reserved word in SQL
and would need quoting in every hand-written query and version step.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from byodb.content.tables._base import (
    counter_column,
    created_at_column,
    enum_check,
    fk_column,
    flag_column,
    id_column,
    metadata,
    optional_timestamp_column,
    timestamp_column,
    updated_at_column,
    user_id_column,
)

PRESENTATION_STATUSES: tuple[str, ...] = ("draft", "ready", "presenting")
SLIDE_TYPES: tuple[str, ...] = ("title", "content", "image", "code", "split")

presentations = Table(
    "presentations",
    metadata,
    id_column(),
    user_id_column(),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("theme", Text),
    Column("status", Text, nullable=False),
    # A deck outlives the conversation it was generated from.
    fk_column("source_conversation_id", "conversations", ondelete="SET NULL", nullable=True),
    created_at_column(),
    updated_at_column(),
    enum_check("status", PRESENTATION_STATUSES),
    Index("ix_presentations_user", "user_id"),
    Index("ix_presentations_user_status", "user_id", "status"),
    Index("ix_presentations_source_conversation", "source_conversation_id"),
)

slides = Table(
    "slides",
    metadata,
    id_column(),
    fk_column("presentation_id", "presentations", ondelete="CASCADE"),
    user_id_column(),
    Column("position", Integer, nullable=False),
    Column("type", Text, nullable=False),
    Column("content", JSONB, nullable=False),  # shape depends on the slide type
    Column("notes", Text),
    created_at_column(),
    updated_at_column(),
    enum_check("type", SLIDE_TYPES),
    Index("ix_slides_user", "user_id"),
    Index("ix_slides_presentation", "presentation_id"),
    Index("ix_slides_presentation_position", "presentation_id", "position"),
)

outline_items = Table(
    "outline_items",
    metadata,
    id_column(),
    fk_column("presentation_id", "presentations", ondelete="CASCADE"),
    user_id_column(),
    Column("position", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("content", Text),
    flag_column("is_completed"),
    created_at_column(),
    Index("ix_outline_items_user", "user_id"),
    Index("ix_outline_items_presentation", "presentation_id"),
)

design_templates = Table(
    "design_templates",
    metadata,
    id_column(),
    user_id_column(),
    Column("name", Text, nullable=False),
    Column("config", JSONB, nullable=False),  # theme configuration
    flag_column("is_default"),
    created_at_column(),
    updated_at_column(),
    Index("ix_design_templates_user", "user_id"),
    # Version 2: at most one default template per user (the services clear the others
    # before setting it; the index makes it hold under concurrent writes too).
    Index("uq_design_templates_user_default", "user_id", unique=True,
          postgresql_where=text("is_default")),
)

presentation_sessions = Table(
    "presentation_sessions",
    metadata,
    id_column(),
    fk_column("presentation_id", "presentations", ondelete="CASCADE"),
    user_id_column(),
    counter_column("current_slide"),
    flag_column("is_active"),
    timestamp_column("started_at"),
    optional_timestamp_column("ended_at"),
    Index("ix_presentation_sessions_presentation", "presentation_id"),
    Index("ix_presentation_sessions_user_active", "user_id", "is_active"),
)

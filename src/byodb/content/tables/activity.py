"""Activity events: the user's own timeline of what happened to their content.

The seeds list ``activityEvents`` among the user tables without defining it; the columns
here are this schema's own (recorded in SCHEMA_CHANGELOG[1] and docs/content-schema.md).
``subject_id`` has no foreign key on purpose: an event may name any content row, and the
event should outlive the row it describes.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, Text, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB

from byodb.content.tables._base import created_at_column, id_column, metadata, user_id_column

activity_events = Table(
    "activity_events",
    metadata,
    id_column(),
    user_id_column(),
    Column("event_type", Text, nullable=False),
    Column("subject_type", Text),
    Column("subject_id", Uuid(as_uuid=True)),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    created_at_column(),
    Index("ix_activity_events_user_created", "user_id", "created_at"),
    Index("ix_activity_events_user_event_type", "user_id", "event_type"),
)

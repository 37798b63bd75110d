"""The content schema's version number and changelog.

A database's version is the ``schema_version`` in its ``byodb.byodb_meta`` row. Version 1
is created from the table metadata (``byodb.content.ddl``); every later version N is
reached from N-1 by the frozen SQL of ``byodb.content.steps.VERSION_STEPS[N]``.
"""

from __future__ import annotations

CONTENT_SCHEMA_VERSION = 1
"""The version that the table modules describe and that new deploys create."""

SCHEMA_CHANGELOG: dict[int, str] = {
    1: (
        "Initial content schema: 29 tables in schema byodb (conversations and participants; "
        "messages with tool calls, sources and attachments; memories; files and chunks; "
        "projects and their junctions; notes; bookmarks and snippets; tasks; tags and their "
        "junctions; usage records and TTS cache; presentations with slides, outline items, "
        "design templates and sessions; activity events) plus byodb_meta. "
        "activity_events is new here (id, user_id, event_type, subject_type, subject_id, "
        "data, created_at). File and TTS bytes are stored in bytea columns. "
        "vector(1536) HNSW cosine indexes on messages, memories, file_chunks; generated "
        "tsvector columns with GIN indexes on conversations, messages, memories, notes."
    ),
}
"""One line per version: what it changed, for operators and the manual-deploy package."""


def latest_schema_version() -> int:
    """The newest content schema version this code knows (what deploy and migrate target)."""
    return CONTENT_SCHEMA_VERSION

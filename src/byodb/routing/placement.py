"""Table placement (DESIGN.md §3): every table lives on "main" or on the user's database.

An unknown table is an error, never "default to main" (the seeds' router warned and fell
back to main; a typo there would silently keep a user's content on our database).
"""

from __future__ import annotations

from byodb.errors import UnknownTable
from byodb.instances.lifecycle.states import Placement

_MAIN = (
    "users", "user_preferences", "user_onboarding", "user_stats", "templates",
    "admin_settings", "feedback", "shares", "notifications", "migrations", "email_alerts",
    "jobs", "user_database_config", "byod_migrations",
    # Operations records of this product (not of the seeds): one row per health sweep.
    "health_sweeps",
)
_USER = (
    "conversations", "conversation_participants", "messages", "tool_calls", "sources",
    "attachments", "memories", "files", "file_chunks", "projects", "project_conversations",
    "project_notes", "project_files", "notes", "bookmarks", "snippets", "tasks", "tags",
    "conversation_tags", "note_tags", "task_tags", "usage_records", "tts_cache",
    "presentations", "slides", "outline_items", "design_templates", "presentation_sessions",
    "activity_events",
)

TABLE_PLACEMENT: dict[str, Placement] = {
    **{name: Placement.main for name in _MAIN},
    **{name: Placement.user for name in _USER},
}


def placement_of(table: str) -> Placement:
    """Where ``table`` (SQL name, snake_case) lives. Raises :class:`UnknownTable`."""
    try:
        return TABLE_PLACEMENT[table]
    except KeyError:
        raise UnknownTable(f"table {table!r} has no placement; add it to TABLE_PLACEMENT") from None

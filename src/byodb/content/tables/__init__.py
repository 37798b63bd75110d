"""All content tables of the current schema version, on one ``metadata``.

Importing this package registers every table; ``metadata.sorted_tables`` is then the
complete schema in foreign-key dependency order. One module per content area; the
allowed values of each text enum are exported as tuples so services can validate input
before the database's CHECK constraint would reject it.
"""

from __future__ import annotations

from byodb.content.tables._base import (
    CONTENT_SCHEMA,
    EMBEDDING_DIMENSIONS,
    NAMING_CONVENTION,
    metadata,
)
from byodb.content.tables.activity import activity_events
from byodb.content.tables.bookmarks import bookmarks, snippets
from byodb.content.tables.conversations import (
    PARTICIPANT_ROLES,
    conversation_participants,
    conversations,
)
from byodb.content.tables.files import FILE_STATUSES, file_chunks, files
from byodb.content.tables.memories import MEMORY_SOURCES, memories
from byodb.content.tables.messages import (
    MESSAGE_ROLES,
    MESSAGE_STATUSES,
    TOOL_CALL_STATUSES,
    attachments,
    messages,
    sources,
    tool_calls,
)
from byodb.content.tables.meta import byodb_meta
from byodb.content.tables.notes import notes
from byodb.content.tables.presentations import (
    PRESENTATION_STATUSES,
    SLIDE_TYPES,
    design_templates,
    outline_items,
    presentation_sessions,
    presentations,
    slides,
)
from byodb.content.tables.projects import (
    project_conversations,
    project_files,
    project_notes,
    projects,
)
from byodb.content.tables.tags import TAG_SCOPES, conversation_tags, note_tags, tags, task_tags
from byodb.content.tables.tasks import TASK_PRIORITIES, TASK_STATUSES, tasks
from byodb.content.tables.usage import tts_cache, usage_records

__all__ = [
    "CONTENT_SCHEMA",
    "EMBEDDING_DIMENSIONS",
    "FILE_STATUSES",
    "MEMORY_SOURCES",
    "MESSAGE_ROLES",
    "MESSAGE_STATUSES",
    "NAMING_CONVENTION",
    "PARTICIPANT_ROLES",
    "PRESENTATION_STATUSES",
    "SLIDE_TYPES",
    "TAG_SCOPES",
    "TASK_PRIORITIES",
    "TASK_STATUSES",
    "TOOL_CALL_STATUSES",
    "activity_events",
    "attachments",
    "bookmarks",
    "byodb_meta",
    "conversation_participants",
    "conversation_tags",
    "conversations",
    "design_templates",
    "file_chunks",
    "files",
    "memories",
    "messages",
    "metadata",
    "note_tags",
    "notes",
    "outline_items",
    "presentation_sessions",
    "presentations",
    "project_conversations",
    "project_files",
    "project_notes",
    "projects",
    "slides",
    "snippets",
    "sources",
    "tags",
    "task_tags",
    "tasks",
    "tool_calls",
    "tts_cache",
    "usage_records",
]

"""The content areas, declared: one :class:`Resource` per table a client works with and one
:class:`Link` per junction. Behaviour lives in ``resources`` and ``links``; what is special
about an area is said here in its spec (a task's ``completed_at`` stamp, a tag's unique
name, a slide's appended position, a memory's embedding).

What no spec says has a module of its own: posting a message (``messages``: a model writes
the reply), a file's upload and bytes (``files``: multipart bytes are chunked and indexed,
served raw), usage and the TTS cache.
"""

from __future__ import annotations

from typing import Any

from byodb.assistant.extraction import MAX_MEMORY_CHARS
from byodb.content.limits import MAX_CATEGORY_CHARS
from byodb.content.tables import (
    FILE_STATUSES,
    PARTICIPANT_ROLES,
    PRESENTATION_STATUSES,
    SLIDE_TYPES,
    TAG_SCOPES,
    TASK_PRIORITIES,
    TASK_STATUSES,
    TOOL_CALL_STATUSES,
    activity_events,
    attachments,
    bookmarks,
    conversation_participants,
    conversation_tags,
    conversations,
    design_templates,
    files,
    memories,
    messages,
    note_tags,
    notes,
    outline_items,
    presentation_sessions,
    presentations,
    project_conversations,
    project_files,
    project_notes,
    projects,
    slides,
    snippets,
    sources,
    tags,
    task_tags,
    tasks,
    tool_calls,
)
from byodb.errors import InvalidInput
from byodb.services.links import Link
from byodb.services.resources import Order, Parent, Resource, Stamp

CONVERSATION = Parent("conversation_id", conversations, "conversation")
MESSAGE = Parent("message_id", messages, "message")
PROJECT = Parent("project_id", projects, "project")
NOTE = Parent("note_id", notes, "note")
TASK = Parent("task_id", tasks, "task")
TAG = Parent("tag_id", tags, "tag")
FILE = Parent("file_id", files, "file")
PRESENTATION = Parent("presentation_id", presentations, "presentation")

_OLDEST_FIRST = (Order("created_at"),)
_BY_POSITION = (Order("position"), Order("created_at"))
_RECENTLY_UPDATED = (Order("updated_at", descending=True),)


def _attachment_size(values: dict[str, Any]) -> None:
    """``size`` is the content's length when content is sent; required otherwise."""
    content = values.get("content")
    if content is not None:
        if values.get("size") not in (None, len(content)):
            raise InvalidInput("size: does not match the length of content")
        values["size"] = len(content)
    elif values.get("size") is None:
        raise InvalidInput("size: field required when no content is sent")


# --- conversations and messages ----------------------------------------------------------

CONVERSATIONS = Resource(
    "conversation", conversations,
    doc="Chats: pinned first, then by their last message (newest first). Deleting one "
        "deletes its messages; ``archived`` defaults to false.",
    create=("title", "model", "system_prompt"),
    update=("title", "is_archived", "is_pinned", "model", "system_prompt"),
    trimmed=("title",), filters={"archived": "is_archived", "pinned": "is_pinned"},
    filter_defaults={"archived": False},
    order=(Order("is_pinned", descending=True),
           Order("last_message_at", descending=True, otherwise="created_at")),
    activity=True,
)

PARTICIPANTS = Resource(
    "participant", conversation_participants, owner=CONVERSATION, key="member_id",
    doc="People recorded on a conversation, by their user id, with a role.",
    create=("member_id", "role"), update=("role",), defaults={"role": "viewer"},
    enums={"role": PARTICIPANT_ROLES}, order=(Order("joined_at"),),
    conflict="this member is already a participant of this conversation",
)

MESSAGES = Resource(
    "message", messages,
    doc="One message with its generation state (status, tokens, cost) and branch position.",
)

TOOL_CALLS = Resource(
    "tool_call", tool_calls, owner=MESSAGE, doc="Tools the model called for a message.",
    create=("tool_name", "tool_args", "result", "status", "error"),
    update=("result", "status", "error"), defaults={"tool_args": {}, "status": "pending"},
    enums={"status": TOOL_CALL_STATUSES}, order=_OLDEST_FIRST,
)

SOURCES = Resource(
    "source", sources, owner=MESSAGE, doc="Sources a message cites.",
    create=("url", "title", "snippet"), order=_OLDEST_FIRST,
)

ATTACHMENTS = Resource(
    "attachment", attachments, owner=MESSAGE,
    doc="Files attached to a message. ``content`` is base64; it is returned only when one "
        "attachment is fetched.",
    create=("filename", "mime_type", "size", "url", "content"), optional=("size",),
    prepare=_attachment_size, order=_OLDEST_FIRST,
)

# --- what the assistant keeps -------------------------------------------------------------

MEMORIES = Resource(
    "memory", memories, plural="memories",
    doc="What the assistant keeps about the user, newest first. A memory written here has "
        "``source`` manual; its content is embedded for retrieval (again when it changes). "
        "An inactive memory is kept but not used.",
    create=("content", "category", "importance"),
    update=("content", "category", "importance", "is_active"),
    trimmed=("content", "category"),
    limits={"content": MAX_MEMORY_CHARS, "category": MAX_CATEGORY_CHARS},
    ranges={"importance": (0.0, 1.0)}, fixed={"source": "manual"}, embedded="content",
    filters={"active": "is_active", "category": "category"},
)

FILES = Resource(
    "file", files,
    doc="Uploaded files' metadata, newest first; the bytes are at ``/content``.",
    enums={"status": FILE_STATUSES}, filters={"status": "status"}, bytes_when_got=False,
)

# --- organisation ---------------------------------------------------------------------------

PROJECTS = Resource(
    "project", projects, doc="Projects group conversations, notes and files.",
    create=("name", "description", "color", "icon", "is_archived"),
    update=("name", "description", "color", "icon", "is_archived"),
    filters={"archived": "is_archived"}, filter_defaults={"archived": False},
    order=_RECENTLY_UPDATED, activity=True,
)

NOTES = Resource(
    "note", notes, doc="Markdown notes; pinned first, then recently updated.",
    create=("title", "content", "is_pinned", "is_archived"),
    update=("title", "content", "is_pinned", "is_archived"), defaults={"content": ""},
    filters={"archived": "is_archived", "pinned": "is_pinned"},
    filter_defaults={"archived": False},
    order=(Order("is_pinned", descending=True), *_RECENTLY_UPDATED), activity=True,
)

TASKS = Resource(
    "task", tasks,
    doc="To-dos. Setting status to done stamps completed_at; leaving done clears it. "
        "Listed by due date (none last), then newest.",
    create=("title", "description", "status", "priority", "due_date",
            "source_conversation_id", "source_message_id"),
    update=("title", "description", "status", "priority", "due_date"),
    defaults={"status": "todo"},
    enums={"status": TASK_STATUSES, "priority": TASK_PRIORITIES},
    parents=(Parent("source_conversation_id", conversations, "conversation"),
             Parent("source_message_id", messages, "message",
                    inherit={"source_conversation_id": "conversation_id"})),
    filters={"status": "status", "priority": "priority",
             "source_conversation_id": "source_conversation_id"},
    order=(Order("due_date", nulls_last=True), Order("created_at", descending=True)),
    stamps=(Stamp("status", "done", "completed_at", event="task.completed"),),
    activity=True,
)

BOOKMARKS = Resource(
    "bookmark", bookmarks,
    doc="Bookmarked messages; the conversation is taken from the message.",
    create=("message_id", "note"), update=("note",),
    # The message first: it dictates conversation_id, which is then checked as well.
    parents=(Parent("message_id", messages, "message",
                    inherit={"conversation_id": "conversation_id"}), CONVERSATION),
    filters={"conversation_id": "conversation_id", "message_id": "message_id"},
    activity=True,
)

SNIPPETS = Resource(
    "snippet", snippets, doc="Saved pieces of text or code.",
    create=("title", "content", "language", "source_message_id"),
    update=("title", "content", "language"),
    parents=(Parent("source_message_id", messages, "message"),),
    filters={"language": "language"}, order=_RECENTLY_UPDATED, activity=True,
)

TAGS = Resource(
    "tag", tags, doc="Labels for conversations, notes and tasks; names are unique per user, "
                     "ignoring case.",
    create=("name", "color", "scope"), update=("name", "color", "scope"),
    defaults={"scope": "user"}, enums={"scope": TAG_SCOPES}, filters={"scope": "scope"},
    order=(Order("name"),), unique=("name",), conflict="a tag with this name already exists",
)

# --- presentations ------------------------------------------------------------------------

PRESENTATIONS = Resource(
    "presentation", presentations, doc="Slide decks.",
    create=("title", "description", "theme", "status", "source_conversation_id"),
    update=("title", "description", "theme", "status"), defaults={"status": "draft"},
    enums={"status": PRESENTATION_STATUSES},
    parents=(Parent("source_conversation_id", conversations, "conversation"),),
    filters={"status": "status"}, order=_RECENTLY_UPDATED, activity=True,
)

SLIDES = Resource(
    "slide", slides, owner=PRESENTATION,
    doc="Slides in order of position; a slide without a position goes last.",
    create=("position", "type", "content", "notes"),
    update=("position", "type", "content", "notes"),
    defaults={"type": "content", "content": {}}, enums={"type": SLIDE_TYPES},
    position="position", order=_BY_POSITION,
)

OUTLINE_ITEMS = Resource(
    "outline_item", outline_items, owner=PRESENTATION,
    doc="A presentation's outline in order of position; an item without one goes last.",
    create=("position", "title", "content", "is_completed"),
    update=("position", "title", "content", "is_completed"),
    position="position", order=_BY_POSITION,
)

DESIGN_TEMPLATES = Resource(
    "design_template", design_templates,
    doc="Presentation themes; making one the default clears the flag on the others.",
    create=("name", "config", "is_default"), update=("name", "config", "is_default"),
    defaults={"config": {}}, exclusive="is_default", order=(Order("name"),),
)

PRESENTATION_SESSIONS = Resource(
    "presentation_session", presentation_sessions, owner=PRESENTATION,
    doc="Times a presentation was shown. A new session is active; setting is_active to "
        "false stamps ended_at.",
    create=("current_slide", "is_active"), update=("current_slide", "is_active"),
    defaults={"is_active": True}, filters={"active": "is_active"},
    stamps=(Stamp("is_active", False, "ended_at"),),
    order=(Order("started_at", descending=True),),
)

# --- the timeline ------------------------------------------------------------------------

ACTIVITY = Resource(
    "activity_event", activity_events,
    doc="What happened to the user's content, newest first (ids only, never content).",
    filters={"event_type": "event_type", "subject_type": "subject_type",
             "subject_id": "subject_id"},
)

# --- links --------------------------------------------------------------------------------

PROJECT_CONVERSATIONS = Link(project_conversations, PROJECT, CONVERSATION, "added_at",
                             added_by=True)
PROJECT_NOTES = Link(project_notes, PROJECT, NOTE, "added_at", added_by=True)
PROJECT_FILES = Link(project_files, PROJECT, FILE, "added_at", added_by=True)
CONVERSATION_TAGS = Link(conversation_tags, CONVERSATION, TAG, "created_at")
NOTE_TAGS = Link(note_tags, NOTE, TAG, "created_at")
TASK_TAGS = Link(task_tags, TASK, TAG, "created_at")

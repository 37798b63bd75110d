"""The content areas' routes, mounted from their specs (``byodb.services.areas``) by the
factory in ``resources``, plus the areas with routes of their own (usage, TTS cache).
The app includes the one router :func:`build_router` makes (in ``create_app``, not at
import: building the request models takes a noticeable part of a second)."""

from __future__ import annotations

import functools

from fastapi import APIRouter

from byodb.services import areas
from byodb.web.api import tts_cache, usage
from byodb.web.api.resources import OPERATIONS, link_router, resource_router

RESOURCES = (
    (areas.CONVERSATIONS, "/api/conversations", "conversations", None),
    (areas.MEMORIES, "/api/memories", "memories", None),
    # The upload and the bytes: web/api/files.py.
    (areas.FILES, "/api/files", "files", {"list", "get", "delete"}),
    (areas.PARTICIPANTS, "/api/conversations/{conversation_id}/participants",
     "conversations", None),
    (areas.MESSAGES, "/api/messages", "messages", {"get"}),
    (areas.TOOL_CALLS, "/api/messages/{message_id}/tool-calls", "messages", None),
    (areas.SOURCES, "/api/messages/{message_id}/sources", "messages", None),
    (areas.ATTACHMENTS, "/api/messages/{message_id}/attachments", "messages", None),
    (areas.PROJECTS, "/api/projects", "projects", None),
    (areas.NOTES, "/api/notes", "notes", None),
    (areas.TASKS, "/api/tasks", "tasks", None),
    (areas.BOOKMARKS, "/api/bookmarks", "bookmarks", None),
    (areas.SNIPPETS, "/api/snippets", "snippets", None),
    (areas.TAGS, "/api/tags", "tags", None),
    (areas.PRESENTATIONS, "/api/presentations", "presentations", None),
    (areas.SLIDES, "/api/presentations/{presentation_id}/slides", "presentations", None),
    (areas.OUTLINE_ITEMS, "/api/presentations/{presentation_id}/outline-items",
     "presentations", None),
    (areas.PRESENTATION_SESSIONS, "/api/presentations/{presentation_id}/sessions",
     "presentations", None),
    (areas.DESIGN_TEMPLATES, "/api/design-templates", "presentations", None),
    (areas.ACTIVITY, "/api/activity", "activity", {"list"}),
)
"""The areas declared by a spec: (spec, path, tag, operations — None for all)."""

LINKS = (
    (areas.PROJECT_CONVERSATIONS, "/api/projects", "conversations", "projects",
     ("/api/conversations", "projects")),
    (areas.PROJECT_NOTES, "/api/projects", "notes", "projects", ("/api/notes", "projects")),
    # No reverse route under /api/files: that namespace belongs to the files area.
    (areas.PROJECT_FILES, "/api/projects", "files", "projects", None),
    (areas.CONVERSATION_TAGS, "/api/conversations", "tags", "tags",
     ("/api/tags", "conversations")),
    (areas.NOTE_TAGS, "/api/notes", "tags", "tags", ("/api/tags", "notes")),
    (areas.TASK_TAGS, "/api/tasks", "tags", "tags", ("/api/tags", "tasks")),
)
"""The links between areas: (link, left path, right segment, tag, reverse route or None)."""


@functools.cache
def build_router() -> APIRouter:
    """Every content area's routes, on one router built by the first ``create_app`` of the
    process and shared by later ones (the routes depend on nothing but the specs; each app
    copies them when it includes the router)."""
    router = APIRouter()
    for spec, path, tag, operations in RESOURCES:
        router.include_router(resource_router(spec, path, tag=tag,
                                              operations=operations or OPERATIONS))
    for link, left_path, right_segment, tag, reverse in LINKS:
        router.include_router(link_router(link, left_path=left_path,
                                          right_segment=right_segment, tag=tag,
                                          reverse=reverse))
    router.include_router(usage.router)
    router.include_router(tts_cache.router)
    return router

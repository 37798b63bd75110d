"""The readable copy of an export: one Markdown file per conversation and per note."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_SLUG = 60
ROLE_TITLES = {"user": "You", "assistant": "Assistant", "system": "System"}


def slug(title: str | None, fallback: str) -> str:
    """A file-name-safe form of a title: ASCII letters, digits, ``.``, ``_``, ``-``."""
    text = _UNSAFE.sub("-", title or "").strip("-.")[:_MAX_SLUG].strip("-.")
    return text or fallback


def member_name(folder: str, row_id: UUID, title: str | None, fallback: str) -> str:
    """``markdown/<folder>/<slug>-<id>.md``: readable, and unique by the id."""
    return f"markdown/{folder}/{slug(title, fallback)}-{row_id}.md"


def conversation_header(conversation: dict[str, Any]) -> str:
    lines = [f"# {conversation.get('title') or 'Untitled conversation'}", ""]
    lines.append(f"- Created: {conversation['created_at']}")
    if conversation.get("model"):
        lines.append(f"- Model: {conversation['model']}")
    return "\n".join(lines) + "\n"


def message_section(message: dict[str, Any]) -> str:
    """One message: who and when, then its text. An alternative answer or an edited
    question (a branch) says which one it is."""
    who = ROLE_TITLES.get(str(message["role"]), str(message["role"]))
    branch = int(message.get("branch_index") or 0)
    alternative = f" (alternative {branch + 1})" if branch else ""
    # A reply's time is when it was written (it was created with the question, blank).
    when = message.get("generation_completed_at") or message["created_at"]
    return f"\n## {who}{alternative} · {when}\n\n{message['content']}\n"


def note_document(note: dict[str, Any]) -> str:
    return f"# {note['title']}\n\n{note['content']}\n"

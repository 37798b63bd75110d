"""Conversations: create, list (archived/pinned filters, last-message order), get, update,
delete with their messages."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from byodb.content.limits import MAX_LIST_LIMIT, MAX_TITLE_CHARS
from byodb.content.tables import conversations
from byodb.errors import InvalidInput, NotFound
from byodb.ids import new_id
from byodb.routing import Router
from byodb.services.activity import record_event
from byodb.services.rows import Reader, public_columns

_READER = Reader.of(public_columns(conversations))
_COLUMNS = _READER.columns


def _check_title(title: str | None) -> str | None:
    if title is None:
        return None
    title = title.strip()
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"title is longer than {MAX_TITLE_CHARS} characters")
    return title or None


async def create_conversation(router: Router, user_id: str, *, title: str | None = None,
                              model: str | None = None,
                              system_prompt: str | None = None) -> dict[str, Any]:
    values = {"id": new_id(), "user_id": user_id, "title": _check_title(title),
              "model": model, "system_prompt": system_prompt}
    async with router.connect(user_id, conversations) as conn:
        row = (await conn.execute(
            conversations.insert().values(**values).returning(*_COLUMNS))).one()
        await record_event(conn, user_id, "conversation.created",
                           subject_type="conversation", subject_id=row.id)
    return _READER.read(row)


async def list_conversations(router: Router, user_id: str, *, archived: bool | None = False,
                             pinned: bool | None = None,
                             limit: int = 50) -> list[dict[str, Any]]:
    """Pinned first, then by last message (newest first), then newest created."""
    limit = max(1, min(limit, MAX_LIST_LIMIT))
    query = select(*_COLUMNS).where(conversations.c.user_id == user_id)
    if archived is not None:
        query = query.where(conversations.c.is_archived.is_(archived))
    if pinned is not None:
        query = query.where(conversations.c.is_pinned.is_(pinned))
    query = query.order_by(
        conversations.c.is_pinned.desc(),
        func.coalesce(conversations.c.last_message_at, conversations.c.created_at).desc(),
        conversations.c.id.desc(),
    ).limit(limit)
    async with router.connect(user_id, conversations) as conn:
        rows = (await conn.execute(query)).all()
    return [_READER.read(r) for r in rows]


async def fetch_owned_conversation(conn: AsyncConnection, user_id: str,
                                   conversation_id: UUID) -> dict[str, Any]:
    row = (await conn.execute(
        select(*_COLUMNS).where(conversations.c.id == conversation_id,
                                conversations.c.user_id == user_id))).first()
    if row is None:
        raise NotFound("conversation not found")
    return _READER.read(row)


async def get_conversation(router: Router, user_id: str,
                           conversation_id: UUID) -> dict[str, Any]:
    async with router.connect(user_id, conversations) as conn:
        return await fetch_owned_conversation(conn, user_id, conversation_id)


async def update_conversation(router: Router, user_id: str, conversation_id: UUID,
                              changes: dict[str, Any]) -> dict[str, Any]:
    """Rename, archive, pin or change the model / system prompt."""
    allowed = {"title", "is_archived", "is_pinned", "model", "system_prompt"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}")
    if "title" in changes:
        changes["title"] = _check_title(changes["title"])
    async with router.connect(user_id, conversations) as conn:
        row = (await conn.execute(
            update(conversations)
            .where(conversations.c.id == conversation_id, conversations.c.user_id == user_id)
            .values(**changes, updated_at=func.now())
            .returning(*_COLUMNS))).first()
        if row is None:
            raise NotFound("conversation not found")
        # Before the commit: an update answered with an error must not have happened.
        return _READER.read(row)


async def delete_conversation(router: Router, user_id: str, conversation_id: UUID) -> None:
    """Delete a conversation; its messages go with it (ON DELETE CASCADE)."""
    async with router.connect(user_id, conversations) as conn:
        deleted = (await conn.execute(
            delete(conversations)
            .where(conversations.c.id == conversation_id, conversations.c.user_id == user_id)
            .returning(conversations.c.id))).first()
        if deleted is not None:
            await record_event(conn, user_id, "conversation.deleted",
                               subject_type="conversation", subject_id=conversation_id)
    if deleted is None:
        raise NotFound("conversation not found")

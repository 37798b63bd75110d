"""Message branches: every message names the one it answers (``parent_message_id``), so a
conversation is a tree. Posting a message with a ``parent_message_id`` starts a branch
there (editing a question, regenerating an answer); posting without one continues from the
latest message. ``branch_index`` is the number of siblings that existed before, so the
first answer is 0, the first alternative 1, …

The model sees only the new message's branch: its ancestors, nearest first.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from byodb.content.tables import messages
from byodb.errors import InvalidInput, NotFound
from byodb.services.rows import Reader

# A branch deeper than this is cut when gathering context; ids are made by the app and a
# parent always exists before its child, so this only bounds work, it never breaks a cycle.
_MAX_ANCESTORS = 1_000


async def choose_parent(conn: AsyncConnection, user_id: str, conversation_id: UUID,
                        parent_message_id: UUID | None) -> UUID | None:
    """The message a new one answers: the named one, which must be the user's message in
    this conversation, or else the conversation's latest message (None if it is empty)."""
    if parent_message_id is None:
        latest: UUID | None = (await conn.execute(
            select(messages.c.id)
            .where(messages.c.conversation_id == conversation_id,
                   messages.c.user_id == user_id)
            .order_by(messages.c.created_at.desc(), messages.c.id.desc()).limit(1))).scalar()
        return latest
    found = (await conn.execute(
        select(messages.c.conversation_id)
        .where(messages.c.id == parent_message_id, messages.c.user_id == user_id))).first()
    if found is None:
        raise NotFound("message not found")
    if found.conversation_id != conversation_id:
        raise InvalidInput("parent_message_id: not a message of this conversation")
    return parent_message_id


async def next_branch_index(conn: AsyncConnection, user_id: str, conversation_id: UUID,
                            parent_id: UUID | None) -> int:
    """How many messages already answer ``parent_id`` (roots: have no parent)."""
    same_parent = (messages.c.parent_message_id.is_(None) if parent_id is None
                   else messages.c.parent_message_id == parent_id)
    count: int = (await conn.execute(
        select(func.count()).select_from(messages)
        .where(messages.c.conversation_id == conversation_id, messages.c.user_id == user_id,
               same_parent))).scalar_one()
    return count


def branch_history(user_id: str, tip_id: UUID, limit: int) -> tuple[Reader, Select[Any]]:
    """``(role, content)`` of the complete messages from ``tip_id`` up to the root, nearest
    first, at most ``limit``; and the reader of its rows."""
    columns = (messages.c.id, messages.c.parent_message_id, messages.c.role,
               messages.c.content, messages.c.status)
    chain = (select(*columns, literal(0).label("depth"))
             .where(messages.c.id == tip_id, messages.c.user_id == user_id)
             .cte("branch", recursive=True))
    up = messages.alias("up")
    chain = chain.union_all(
        select(up.c.id, up.c.parent_message_id, up.c.role, up.c.content, up.c.status,
               chain.c.depth + 1)
        .where(up.c.id == chain.c.parent_message_id, up.c.user_id == user_id,
               chain.c.depth < _MAX_ANCESTORS))
    # What goes to the model is bounded like a response: cut on the server, checked by
    # the reader.
    reader = Reader.of([chain.c.role, chain.c.content])
    return reader, (select(*reader.columns).where(chain.c.status == "complete")
                    .order_by(chain.c.depth).limit(limit))

"""Messages: list a conversation's messages; post a user message and store the assistant's
reply (streamed from the chat model, persisted when complete)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from byodb.assistant import ChatModel, ChatTurn
from byodb.assistant.embeddings import EmbeddingModel
from byodb.content.limits import MAX_MESSAGE_CHARS, MAX_MESSAGES_LISTED
from byodb.content.tables import conversations, messages
from byodb.errors import InvalidInput, NotFound
from byodb.ids import new_id
from byodb.routing import Router
from byodb.services import branching, usage
from byodb.services.after_exchange import after_exchange
from byodb.services.after_work import AfterWork
from byodb.services.rows import Reader, public_columns

_READER = Reader.of(public_columns(messages))
_COLUMNS = _READER.columns
_CONVERSATION = Reader.of([conversations.c.id, conversations.c.system_prompt])
_CONTEXT_MESSAGES = 40


@dataclass(frozen=True)
class ReplyEvent:
    """One step of a reply: ``user_message`` | ``delta`` | ``assistant_message``."""

    kind: str
    data: Any


def _approx_tokens(text: str) -> int:
    return max(1, round(len(text.split()) * 4 / 3)) if text.strip() else 0



TITLE_CHARS = 60
"""An automatic chat title is at most this long (plus an ellipsis when cut)."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def chat_title(content: str) -> str:
    """A conversation's automatic title from its first message: the first sentence of its
    first line, whole when it fits; else cut between words, with an ellipsis to say so."""
    line = next((ln.strip() for ln in content.splitlines() if ln.strip()), "")
    line = " ".join(_SENTENCE_END.split(line, maxsplit=1)[0].split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS + 1].rsplit(" ", 1)[0] if " " in line[:TITLE_CHARS + 1] \
        else line[:TITLE_CHARS]
    return cut.rstrip(",;:-\u2013\u2014") + "…"


async def fetch_owned_conversation(conn: AsyncConnection, user_id: str,
                                   conversation_id: UUID) -> dict[str, Any]:
    """What the message path needs of the user's conversation, or ``not_found``."""
    row = (await conn.execute(select(*_CONVERSATION.columns).where(
        conversations.c.id == conversation_id, conversations.c.user_id == user_id))).first()
    if row is None:
        raise NotFound("conversation not found")
    return _CONVERSATION.read(row)


async def list_messages(router: Router, user_id: str, conversation_id: UUID, *,
                        limit: int = MAX_MESSAGES_LISTED) -> list[dict[str, Any]]:
    """The conversation's newest ``limit`` messages (at most :data:`MAX_MESSAGES_LISTED`,
    so a listing's size is bounded however many rows the database holds), oldest first."""
    limit = max(1, min(limit, MAX_MESSAGES_LISTED))
    newest = (select(*_COLUMNS)
              .where(messages.c.conversation_id == conversation_id,
                     messages.c.user_id == user_id)
              .order_by(messages.c.created_at.desc(), messages.c.id.desc())
              .limit(limit).subquery("newest"))
    async with router.connect(user_id, messages) as conn:
        await fetch_owned_conversation(conn, user_id, conversation_id)
        rows = (await conn.execute(
            select(newest).order_by(newest.c.created_at, newest.c.id))).all()
    return [_READER.read(r) for r in rows]


async def _branch_history(conn: AsyncConnection, user_id: str,
                          tip_id: UUID) -> list[dict[str, Any]]:
    reader, statement = branching.branch_history(user_id, tip_id, _CONTEXT_MESSAGES)
    return [reader.read(r) for r in (await conn.execute(statement)).all()]


async def _capped(pieces: AsyncIterator[str], limit: int) -> AsyncIterator[str]:
    """The model's reply, cut at ``limit`` characters: a stored message must be one the
    API could have written, or it would not read back (``services.rows``)."""
    room = limit
    async for piece in pieces:
        yield piece[:room]
        room -= len(piece)
        if room <= 0:
            break


async def send_message(router: Router, model: ChatModel, user_id: str,
                       conversation_id: UUID, content: str, *, embedder: EmbeddingModel,
                       after: AfterWork,
                       parent_message_id: UUID | None = None) -> AsyncIterator[ReplyEvent]:
    """Store the user's message, stream the reply, store the reply; then hand the
    exchange's embedding and memory extraction to ``after``, which runs them once the
    caller has the reply (the reply never waits for them).

    No database connection is held while the model generates: the reply is written in a
    second transaction, so a slow model never pins a connection of the user's small pool.
    The message answers ``parent_message_id`` (a branch) or else the latest message, and
    the model sees that branch only (``byodb.services.branching``).
    """
    if not isinstance(content, str) or not content.strip():
        raise InvalidInput("message content is empty")
    if len(content) > MAX_MESSAGE_CHARS:
        raise InvalidInput(f"message is longer than {MAX_MESSAGE_CHARS} characters")
    now = datetime.now(UTC)
    async with router.connect(user_id, messages) as conn:
        conversation = await fetch_owned_conversation(conn, user_id, conversation_id)
        parent_id = await branching.choose_parent(conn, user_id, conversation_id,
                                                  parent_message_id)
        history = [] if parent_id is None else await _branch_history(conn, user_id,
                                                                      parent_id)
        user_row = (await conn.execute(messages.insert().values(
            id=new_id(), conversation_id=conversation_id, user_id=user_id, role="user",
            content=content, status="complete", input_tokens=_approx_tokens(content),
            parent_message_id=parent_id, branch_index=await branching.next_branch_index(
                conn, user_id, conversation_id, parent_id),
        ).returning(*_COLUMNS))).one()
        assistant_id = new_id()
        await conn.execute(messages.insert().values(
            id=assistant_id, conversation_id=conversation_id, user_id=user_id,
            role="assistant", content="", status="generating", model=model.name,
            parent_message_id=user_row.id, generation_started_at=now,
        ))
    user_message = _READER.read(user_row)
    yield ReplyEvent("user_message", user_message)

    turns = [ChatTurn("system", conversation["system_prompt"])] if conversation.get(
        "system_prompt") else []
    turns += [ChatTurn(m["role"], m["content"]) for m in reversed(history)]
    turns.append(ChatTurn("user", content))
    pieces: list[str] = []
    failure: str | None = None
    try:
        async for piece in _capped(model.stream(turns), MAX_MESSAGE_CHARS):
            pieces.append(piece)
            yield ReplyEvent("delta", piece)
    except Exception as exc:  # the model failing must still leave a finished message
        failure = f"The model failed: {type(exc).__name__}"
    reply = "".join(pieces)
    input_tokens = sum(_approx_tokens(t.content) for t in turns)
    async with router.connect(user_id, messages) as conn:
        assistant_row = (await conn.execute(
            update(messages)
            .where(messages.c.id == assistant_id, messages.c.user_id == user_id)
            .values(content=reply, status="error" if failure else "complete", error=failure,
                    input_tokens=input_tokens, output_tokens=_approx_tokens(reply),
                    generation_completed_at=func.now(), updated_at=func.now())
            .returning(*_COLUMNS))).one()
        title = chat_title(content)
        await conn.execute(
            update(conversations)
            .where(conversations.c.id == conversation_id, conversations.c.user_id == user_id)
            .values(last_message_at=func.now(), updated_at=func.now(),
                    message_count=conversations.c.message_count + 2,
                    title=case((conversations.c.title.is_(None), title),
                               else_=conversations.c.title)))
        await usage.record_reply(conn, user_id, assistant_row)
    assistant_message = _READER.read(assistant_row)
    # Started before the last event is handed out, so a client that goes away on it
    # cannot skip it; the task first runs when this generator next waits, and nothing
    # the caller receives waits on it.
    after.start("indexing an exchange", user_id, after_exchange(
        router, model, embedder, user_id, conversation_id, user_message, assistant_message))
    yield ReplyEvent("assistant_message", assistant_message)


async def post_message(router: Router, model: ChatModel, user_id: str,
                       conversation_id: UUID, content: str, *, embedder: EmbeddingModel,
                       after: AfterWork,
                       parent_message_id: UUID | None = None) -> dict[str, Any]:
    """Non-streaming form of :func:`send_message`: both stored messages."""
    result: dict[str, Any] = {}
    async for event in send_message(router, model, user_id, conversation_id, content,
                                    embedder=embedder, after=after,
                                    parent_message_id=parent_message_id):
        if event.kind != "delta":
            result[event.kind] = event.data
    return result

"""A conversation's messages (DESIGN.md §5): listing them and posting one, which a model
answers. The conversations themselves are a declared content area (``services.areas``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import Field

from byodb.content.limits import MAX_MESSAGE_CHARS
from byodb.errors import ByodbError
from byodb.services import messages as message_service
from byodb.web.api.models import RequestModel
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/conversations", tags=["conversations"])


class NewMessage(RequestModel):
    content: str = Field(..., min_length=1, max_length=MAX_MESSAGE_CHARS)
    parent_message_id: UUID | None = Field(
        None, description="Branch from this message of the conversation (edit or "
                          "regenerate); default: continue from the latest message")


@router.get("/{conversation_id}/messages")
async def list_messages(conversation_id: UUID, rt: RuntimeDep,
                        me: PrincipalDep) -> dict[str, Any]:
    items = await message_service.list_messages(rt.router, me.user_id, conversation_id)
    return {"items": items}


@router.post("/{conversation_id}/messages", status_code=201)
async def post_message(conversation_id: UUID, body: NewMessage, rt: RuntimeDep,
                       me: PrincipalDep) -> dict[str, Any]:
    """Store the user's message and the assistant's reply; returns both as soon as the
    reply is stored (its embedding and memory extraction follow)."""
    return await message_service.post_message(rt.router, rt.chat_model, me.user_id,
                                              conversation_id, body.content,
                                              embedder=rt.embedder, after=rt.after_work,
                                              parent_message_id=body.parent_message_id)


@router.post("/{conversation_id}/messages/stream")
async def stream_message(conversation_id: UUID, body: NewMessage, rt: RuntimeDep,
                         me: PrincipalDep) -> StreamingResponse:
    """Like posting a message, as server-sent events: ``user_message``, ``delta``…,
    ``assistant_message`` (or ``error``)."""
    events = message_service.send_message(rt.router, rt.chat_model, me.user_id,
                                           conversation_id, body.content,
                                           embedder=rt.embedder, after=rt.after_work,
                                           parent_message_id=body.parent_message_id)
    first = await anext(events)  # errors before the first event become normal JSON errors

    async def sse() -> AsyncIterator[str]:
        yield f"event: {first.kind}\ndata: {json.dumps(first.data)}\n\n"
        try:
            async for event in events:
                yield f"event: {event.kind}\ndata: {json.dumps(event.data)}\n\n"
        except Exception as exc:
            code = exc.code if isinstance(exc, ByodbError) else "internal_error"
            message = exc.message if isinstance(exc, ByodbError) else "the reply failed"
            yield f"event: error\ndata: {json.dumps({'code': code, 'message': message})}\n\n"

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})

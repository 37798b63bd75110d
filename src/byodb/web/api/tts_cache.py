"""The text-to-speech cache: audio as base64 in JSON, found by the client's hash."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, Field

from byodb.content.limits import (
    HASH_PATTERN,
    MAX_HASH_CHARS,
    MAX_INLINE_BYTES,
    MAX_LIST_LIMIT,
    MAX_LIST_OFFSET,
    MAX_SHORT_TEXT_CHARS,
    MAX_TEXT_CHARS,
)
from byodb.services import tts_cache as tts_service
from byodb.web.api.models import RequestModel
from byodb.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(prefix="/api/tts-cache", tags=["tts cache"])

_BASE64_CHARS = 4 * -(-MAX_INLINE_BYTES // 3)


class NewAudio(RequestModel):
    hash: str = Field(..., min_length=1, max_length=MAX_HASH_CHARS, pattern=HASH_PATTERN,
                      description="The client's hash of text + voice + settings")
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    voice: str = Field(..., min_length=1, max_length=MAX_SHORT_TEXT_CHARS)
    audio: str = Field(..., max_length=_BASE64_CHARS,
                       description=f"base64, at most {MAX_INLINE_BYTES} bytes decoded")
    expires_at: AwareDatetime | None = Field(
        None, description="Default: 30 days from now; at most 365 days away")


HashPath = Path(..., max_length=MAX_HASH_CHARS, pattern=HASH_PATTERN)


@router.post("", status_code=201)
async def store(body: NewAudio, rt: RuntimeDep, me: PrincipalDep) -> dict[str, Any]:
    """Store audio under a hash, replacing what was stored under it."""
    return await tts_service.store_audio(
        rt.router, me.user_id, hash=body.hash, text=body.text, voice=body.voice,
        audio=body.audio, expires_at=body.expires_at)


@router.get("")
async def list_entries(rt: RuntimeDep, me: PrincipalDep,
                       limit: int = Query(50, ge=1, le=MAX_LIST_LIMIT),
                       offset: int = Query(0, ge=0, le=MAX_LIST_OFFSET)) -> dict[str, Any]:
    """Live entries, newest first, without their audio."""
    return {"items": await tts_service.list_entries(rt.router, me.user_id, limit=limit,
                                                    offset=offset)}


@router.get("/{hash}")
async def lookup(rt: RuntimeDep, me: PrincipalDep, hash: str = HashPath) -> dict[str, Any]:
    """The live entry for a hash with its ``audio`` (base64); expired entries are 404."""
    return await tts_service.find_audio(rt.router, me.user_id, hash)


@router.delete("/{hash}", status_code=204, response_class=Response)
async def forget(rt: RuntimeDep, me: PrincipalDep, hash: str = HashPath) -> Response:
    await tts_service.forget_audio(rt.router, me.user_id, hash)
    return Response(status_code=204)

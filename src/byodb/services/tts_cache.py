"""The text-to-speech cache: synthesized audio kept on the user's database, found by the hash
of text + voice + settings that the client computes.

Storing under a hash replaces what was stored under it; an expired entry is never returned
and is deleted the next time the user stores audio. Lists leave the audio out; a lookup by
hash returns it (base64 in the API).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select

from byodb.content.limits import DEFAULT_TTS_TTL_DAYS, HASH_PATTERN, MAX_TTS_TTL_DAYS
from byodb.content.tables import tts_cache
from byodb.errors import InvalidInput, NotFound
from byodb.ids import new_id
from byodb.routing import Router
from byodb.services.resources import Resource, delete_row, field_rule, page_bounds, to_json
from byodb.services.rows import Reader, public_columns

# The field rules (limits, base64) and the delete are the generic ones, so the cache checks
# input exactly like every other area.
SPEC = Resource("cached_audio", tts_cache, key="hash",
                create=("hash", "text", "voice", "audio"))
_READER = Reader.of(public_columns(tts_cache))
_WITH_AUDIO = Reader.of([*public_columns(tts_cache), tts_cache.c.audio])
_LIVE = tts_cache.c.expires_at > func.now()


def _store_lock_key(user_id: str) -> int:
    digest = hashlib.sha256(f"byodb-tts-store:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def store_audio(router: Router, user_id: str, *, hash: str, text: str, voice: str,
                      audio: bytes | str, expires_at: datetime | None = None
                      ) -> dict[str, Any]:
    values = {name: field_rule(SPEC, name).check(value) for name, value in
              (("hash", hash), ("text", text), ("voice", voice), ("audio", audio))}
    if not re.fullmatch(HASH_PATTERN, values["hash"]):
        raise InvalidInput("hash: only letters, digits and _ . : - are allowed")
    now = datetime.now(UTC)
    if expires_at is None:
        expires_at = now + timedelta(days=DEFAULT_TTS_TTL_DAYS)
    elif expires_at.tzinfo is None:
        raise InvalidInput("expires_at: must be a date-time with a time zone")
    if not now < expires_at <= now + timedelta(days=MAX_TTS_TTL_DAYS):
        raise InvalidInput(f"expires_at: must be in the future and at most "
                           f"{MAX_TTS_TTL_DAYS} days away")
    async with router.connect(user_id, tts_cache) as conn:
        # One entry per hash: storing again replaces; expired entries are swept here. The
        # lock serialises this user's stores, so two at once cannot both insert a hash on
        # a version-1 database (version 2's unique index would refuse the second anyway).
        await conn.execute(select(func.pg_advisory_xact_lock(_store_lock_key(user_id))))
        await conn.execute(delete(tts_cache).where(
            tts_cache.c.user_id == user_id,
            or_(tts_cache.c.hash == values["hash"], tts_cache.c.expires_at <= func.now())))
        row = (await conn.execute(tts_cache.insert().values(
            id=new_id(), user_id=user_id, expires_at=expires_at, **values,
        ).returning(*_READER.columns))).one()
    return to_json(_READER, row)


async def find_audio(router: Router, user_id: str, hash: str) -> dict[str, Any]:
    """The live entry stored under ``hash``, with its audio."""
    async with router.connect(user_id, tts_cache) as conn:
        row = (await conn.execute(
            select(*_WITH_AUDIO.columns)
            .where(tts_cache.c.user_id == user_id, tts_cache.c.hash == hash, _LIVE)
            .order_by(tts_cache.c.created_at.desc()).limit(1))).first()
    if row is None:
        raise NotFound("no cached audio for this hash")
    return to_json(_WITH_AUDIO, row)


async def list_entries(router: Router, user_id: str, *, limit: int = 50,
                       offset: int = 0) -> list[dict[str, Any]]:
    limit, offset = page_bounds(limit, offset)
    async with router.connect(user_id, tts_cache) as conn:
        rows = (await conn.execute(
            select(*_READER.columns).where(tts_cache.c.user_id == user_id, _LIVE)
            .order_by(tts_cache.c.created_at.desc(), tts_cache.c.id.desc())
            .limit(limit).offset(offset))).all()
    return [to_json(_READER, r) for r in rows]


async def forget_audio(router: Router, user_id: str, hash: str) -> None:
    await delete_row(router, user_id, SPEC, hash)

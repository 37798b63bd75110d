"""The TTS cache returns live audio by hash and never an expired entry; the activity
timeline records the main actions — on main and on the user's own database alike."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from tests.areas_support import Place, place

__all__ = ["place"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def check_tts_audio_is_found_by_hash_until_it_expires(place: Place) -> None:
    entry = {"hash": "sha256:abc", "text": "Hello", "voice": "alloy",
             "audio": _b64(b"RIFF-audio-1")}
    stored = await place.create("/api/tts-cache", entry)
    assert stored["hash"] == "sha256:abc" and "audio" not in stored
    found = (await place.call("GET", "/api/tts-cache/sha256:abc", expect=200)).json()
    assert base64.b64decode(found["audio"]) == b"RIFF-audio-1"
    assert datetime.fromisoformat(found["expires_at"]) > datetime.now(UTC) + timedelta(days=29)

    # Storing under the same hash replaces.
    await place.create("/api/tts-cache", {**entry, "audio": _b64(b"RIFF-audio-2")})
    found = (await place.call("GET", "/api/tts-cache/sha256:abc", expect=200)).json()
    assert base64.b64decode(found["audio"]) == b"RIFF-audio-2"
    assert place.count("tts_cache") == 1

    # An entry past its expiry is not returned (written directly: the API refuses one).
    with psycopg.connect(place.url) as conn:
        conn.execute("insert into byodb.tts_cache (id, user_id, hash, audio, text, voice, "
                     "expires_at) values (%s, %s, 'old', 'x', 'Old', 'alloy', "
                     "now() - interval '1 minute')", (uuid.uuid4(), place.user))
    await place.error("GET", "/api/tts-cache/old", 404, "not_found")
    assert [e["hash"] for e in await place.items("/api/tts-cache")] == ["sha256:abc"]

    for bad in ({**entry, "audio": "not base64!"}, {**entry, "hash": "a/b"},
                {**entry, "expires_at": "2000-01-01T00:00:00Z"},
                {**entry, "expires_at": "2999-01-01T00:00:00Z"}):
        await place.error("POST", "/api/tts-cache", 422, "invalid_input", json=bad)
    assert place.count("tts_cache") == 2  # the live entry and the expired one above

    await place.delete("/api/tts-cache/sha256:abc")
    await place.error("GET", "/api/tts-cache/sha256:abc", 404, "not_found")
    # The next store sweeps the user's expired entries.
    await place.create("/api/tts-cache", {**entry, "hash": "new"})
    assert place.count("tts_cache") == 1


async def check_activity_records_the_main_actions_newest_first(place: Place) -> None:
    conversation = await place.create("/api/conversations", {"title": "Secret plans"})
    await place.delete(f"/api/conversations/{conversation['id']}")
    task = await place.create("/api/tasks", {"title": "Private errand"})
    await place.patch(f"/api/tasks/{task['id']}", {"status": "done"})
    note = await place.create("/api/notes", {"title": "Diary"})
    await place.delete(f"/api/notes/{note['id']}")

    events = await place.items("/api/activity")
    assert [(e["event_type"], e["subject_id"]) for e in events] == [
        ("note.deleted", note["id"]), ("note.created", note["id"]),
        ("task.completed", task["id"]), ("task.created", task["id"]),
        ("conversation.deleted", conversation["id"]),
        ("conversation.created", conversation["id"])]
    # Ids only: a deleted note leaves no copy of its words in the timeline.
    assert all(e["data"] == {} for e in events)
    assert place.count("activity_events", "data::text like %s", "%Diary%") == 0
    tasks = await place.items("/api/activity", subject_type="task")
    assert {e["event_type"] for e in tasks} == {"task.created", "task.completed"}
    assert len(await place.items("/api/activity", limit=2)) == 2
    assert place.count("activity_events") == 6


async def test_tts_cache_and_activity_timeline(place: Place) -> None:
    await check_tts_audio_is_found_by_hash_until_it_expires(place)
    await check_activity_records_the_main_actions_newest_first(place)

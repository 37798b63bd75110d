"""Expand, then contract: the code of the latest schema version serves a user whose own
database is still at the oldest supported version (as during a rollout) — no 503, nothing
lost — and records the embedding model wherever the database has the column.

The version-1 user database is made the way an operator would make one: the schema target
``BYODB_SCHEMA_TARGET=1`` (new deploys create version 1) while main is at the latest.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from byodb.assistant.wordllama_model import MODEL_NAME
from byodb.content import CONTENT_SCHEMA_VERSION, MIN_SUPPORTED_SCHEMA_VERSION
from byodb.settings import Settings
from tests.areas_support import Place
from tests.conftest import Api, count_rows
from tests.test_areas_tts_and_activity import check_tts_audio_is_found_by_hash_until_it_expires
from tests.test_content_areas import (
    check_only_one_design_template_is_the_default,
    check_tags_have_unique_names_and_label_conversations_notes_and_tasks,
)

OLDEST = MIN_SUPPORTED_SCHEMA_VERSION
MODEL = MODEL_NAME


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The suite's settings, with new deploys held at the oldest supported version."""
    return Settings(BYODB_DATA_DIR=tmp_path / "data", BYODB_ENV="development",
                    BYODB_ALLOW_PRIVATE_HOSTS=True, BYODB_TEST_RATE_LIMIT=1000,
                    BYODB_SCHEMA_TARGET=OLDEST)


def _embedding_model_columns(url: str) -> int:
    return count_rows(url, "select count(*) from information_schema.columns where "
                      "table_schema = 'byodb' and column_name = 'embedding_model'")


async def test_the_content_api_works_against_a_database_at_the_oldest_supported_version(
        api: Api, main_url: str, user_db_url: str) -> None:
    assert OLDEST < CONTENT_SCHEMA_VERSION  # otherwise this test would prove nothing
    user = "olga"
    # Content written on main (latest version, with embedding_model) before connecting...
    before = await api.post("/api/memories", user, json={"content": "Grows tomatoes"})
    assert before.status_code == 201, before.text
    assert count_rows(main_url, "select count(*) from byodb.memories where user_id = %s "
                      "and embedding_model = %s", user, MODEL) == 1

    # ...moves to her new database, which the target makes a version-1 database.
    saved = await api.put("/api/byod", user, json={"url": user_db_url})
    assert saved.status_code == 202, saved.text
    state = await api.wait_for_state(user, "connected", "error")
    assert state["connection_status"] == "connected", state
    assert state["schema_version"] == OLDEST
    assert count_rows(user_db_url, "select schema_version from byodb.byodb_meta") == OLDEST
    assert _embedding_model_columns(user_db_url) == 0
    assert count_rows(user_db_url, "select count(*) from byodb.memories where user_id = %s "
                      "and embedding is not null", user) == 1

    place = Place(api, user, user_db_url, main_url)
    # Conversations and messages; the reply's exchange is embedded after it (best effort,
    # so the embeddings on the database are what shows the write fit version 1).
    conversation_id, _ = await place.conversation_with_reply("I repair old bicycles")
    await api.app.state.runtime.after_work.settled()
    assert place.count("messages", "conversation_id = %s and embedding is not null",
                       conversation_id) == 2
    # Memories: created and re-embedded on an edit.
    memory = await place.create("/api/memories", {"content": "Rides a red bicycle"})
    await place.patch(f"/api/memories/{memory['id']}", {"content": "Rides a blue bicycle"})
    assert place.count("memories", "id = %s and embedding is not null", memory["id"]) == 1
    # Files: a text file's chunks with their embeddings.
    uploaded = await place.call("POST", "/api/files", expect=201, files={
        "file": ("notes.md", b"# Notes\n\nThe chain needs oil every month.", "text/markdown")})
    assert place.count("file_chunks", "file_id = %s and embedding is not null",
                       uploaded.json()["id"]) >= 1
    # Tags (unique names in code), TTS entries (one per hash), default design templates.
    await check_tags_have_unique_names_and_label_conversations_notes_and_tasks(place)
    await check_tts_audio_is_found_by_hash_until_it_expires(place)
    await check_only_one_design_template_is_the_default(place)
    # Search reads every kind of embedded row.
    found = await place.call("GET", "/api/search", params={"q": "bicycle", "mode": "semantic"},
                             expect=200)
    assert found.json()["items"]
    assert count_rows(user_db_url, "select schema_version from byodb.byodb_meta") == OLDEST


async def test_moving_back_from_a_version_1_database_to_main_keeps_everything(
        api: Api, main_url: str, user_db_url: str) -> None:
    user = "pete"
    assert (await api.put("/api/byod", user, json={"url": user_db_url})).status_code == 202
    assert (await api.wait_for_state(user, "connected", "error"))["schema_version"] == OLDEST
    place = Place(api, user, user_db_url, main_url)
    memory = await place.create("/api/memories", {"content": "Keeps bees"})
    await place.create("/api/tts-cache", {"hash": "h-1", "text": "Hi", "voice": "alloy",
                                          "audio": base64.b64encode(b"RIFF").decode()})

    moved = await api.post("/api/byod/disconnect", user, json={"mode": "migrate"})
    assert moved.status_code == 202, moved.text
    state = await api.wait_for_state(user, "disconnected", "error")
    assert state["connection_status"] == "disconnected", state
    # On main (latest version) now; the model of a vector made on version 1 is unknown.
    assert count_rows(main_url, "select count(*) from byodb.memories where id = %s and "
                      "embedding is not null and embedding_model is null", memory["id"]) == 1
    assert count_rows(main_url, "select count(*) from byodb.tts_cache where user_id = %s",
                      user) == 1
    listed = await Place(api, user, main_url, None).items("/api/memories")
    assert [m["id"] for m in listed] == [memory["id"]]


async def test_the_target_decides_the_manual_package_version(api: Api) -> None:
    response = await api.get("/api/byod/project.zip", "quinn")
    assert response.status_code == 200
    assert f'byodb-schema-v{OLDEST}.zip' in response.headers["content-disposition"]

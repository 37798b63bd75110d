"""A user's database is untrusted: whatever its owner stores there directly (a 5 MB title, a
20 MB message, huge JSON or bytes), a request loads a bounded amount of it. A value the API
could never have written is a clear ``invalid_stored_content`` error (502) naming the table
and field — never a 500, never the value; rows the API wrote keep working, and other users
notice nothing. Search shows excerpts, so there an oversized text is cut, not refused.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from byodb.content.limits import MAX_FILE_BYTES, MAX_INLINE_BYTES, MAX_JSON_BYTES
from byodb.services.rows import json_text_bytes
from byodb.services.search import SNIPPET_CHARS
from tests.conftest import Api

HUGE_TITLE = "t" * 5_000_000
HUGE_MESSAGE = "word " * 4_000_000  # 20 MB


def owner_writes(url: str, sql: str, *params: Any) -> None:
    """The database's owner changes rows behind the app's back."""
    with psycopg.connect(url) as conn:
        conn.execute(sql, params)


def assert_invalid_stored(response: Any, table: str, field: str) -> None:
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_stored_content"
    assert table in error["message"] and field in error["message"]
    assert len(response.content) < 2_000  # names the problem, carries none of the value


async def connect(api: Api, user: str, url: str) -> None:
    await api.put("/api/byod", user, json={"url": url})
    assert (await api.wait_for_state(user, "connected", "error"))["connection_status"] == \
        "connected"


async def created(api: Api, path: str, user: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(path, user, json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_oversized_conversations_and_messages_are_refused_clearly_and_boundedly(
        api: Api, user_db_url: str) -> None:
    await connect(api, "ola", user_db_url)
    good = await created(api, "/api/conversations", "ola", {"title": "good"})
    bad = await created(api, "/api/conversations", "ola", {"title": "bad"})
    exchange = await created(api, f"/api/conversations/{good['id']}/messages", "ola",
                             {"content": "hi"})
    await created(api, f"/api/conversations/{bad['id']}/messages", "ola", {"content": "hello"})
    elsewhere = await created(api, "/api/conversations", "pim", {"title": "on main"})

    owner_writes(user_db_url, "update byodb.conversations set title = %s where id = %s",
                 HUGE_TITLE, bad["id"])
    owner_writes(user_db_url, "update byodb.messages set content = %s where id = %s",
                 HUGE_MESSAGE, exchange["assistant_message"]["id"])

    tracemalloc.start()
    try:
        listed = await api.get("/api/conversations", "ola")
        messages = await api.get(f"/api/conversations/{good['id']}/messages", "ola")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_invalid_stored(listed, "conversations", "title")
    assert_invalid_stored(messages, "messages", "content")
    # Neither the 5 MB title nor the 20 MB message was loaded: only their cut prefixes.
    assert peak < 4_000_000

    # Rows the API wrote still read; fixing the bad value through the API works.
    assert (await api.get(f"/api/conversations/{good['id']}", "ola")).json()["title"] == "good"
    assert_invalid_stored(await api.get(f"/api/conversations/{bad['id']}", "ola"),
                          "conversations", "title")
    fixed = await api.request("PATCH", f"/api/conversations/{bad['id']}", "ola",
                              json={"title": "fixed"})
    assert fixed.status_code == 200 and fixed.json()["title"] == "fixed"
    assert len((await api.get("/api/conversations", "ola")).json()["items"]) == 2
    others = (await api.get(f"/api/conversations/{bad['id']}/messages", "ola")).json()
    assert others["items"][0]["content"] == "hello"

    # Search shows excerpts: the huge message is cut to a snippet, not refused.
    hits = await api.get("/api/search", "ola", params={"q": "word"})
    assert hits.status_code == 200
    assert hits.json()["items"] and all(len(h["snippet"]) <= SNIPPET_CHARS
                                        for h in hits.json()["items"])

    # Another user notices nothing.
    theirs = await api.get("/api/conversations", "pim")
    assert [c["id"] for c in theirs.json()["items"]] == [elsewhere["id"]]


async def test_oversized_json_and_bytes_are_refused_clearly(api: Api,
                                                            user_db_url: str) -> None:
    await connect(api, "uma", user_db_url)
    conversation = await created(api, "/api/conversations", "uma", {"title": "files"})
    exchange = await created(api, f"/api/conversations/{conversation['id']}/messages", "uma",
                             {"content": "hello"})
    message_id = exchange["user_message"]["id"]
    call = await created(api, f"/api/messages/{message_id}/tool-calls", "uma",
                         {"tool_name": "lookup", "tool_args": {"q": 1}})
    attachment = await created(api, f"/api/messages/{message_id}/attachments", "uma",
                               {"filename": "a.txt", "mime_type": "text/plain",
                                "content": "aGVsbG8="})
    upload = await api.post("/api/files", "uma",
                            files={"file": ("notes.txt", b"plain words", "text/plain")})
    assert upload.status_code == 201, upload.text
    file_id = upload.json()["id"]

    owner_writes(user_db_url, "update byodb.tool_calls set result = %s where id = %s",
                 Jsonb({"blob": "j" * (MAX_JSON_BYTES + 10)}), call["id"])
    owner_writes(user_db_url, "update byodb.attachments set content = %s where id = %s",
                 b"\0" * (MAX_INLINE_BYTES + 1), attachment["id"])
    owner_writes(user_db_url, "update byodb.files set content = %s where id = %s",
                 b"x" * (MAX_FILE_BYTES + 1), file_id)

    assert_invalid_stored(await api.get(f"/api/messages/{message_id}/tool-calls", "uma"),
                          "tool_calls", "result")
    assert_invalid_stored(await api.get(
        f"/api/messages/{message_id}/attachments/{attachment['id']}", "uma"),
        "attachments", "content")
    assert_invalid_stored(await api.get(f"/api/files/{file_id}/content", "uma"),
                          "files", "content")
    # Lists leave the bytes out, so they still work.
    listed = await api.get(f"/api/messages/{message_id}/attachments", "uma")
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1
    assert (await api.get("/api/files", "uma")).status_code == 200


@pytest.mark.parametrize("value", [
    {"big": 1e300, "small": 1.5e-7, "mid": 0.1, "negative": -2.5e20},
    {"text": "é ✓ \n\t \"quoted\" \\ \u0001", "list": [1, 2.0, True, None, {"k": []}]},
    [1.2345678901234568e+17, 1e16, 12345, -0.0],
])
def test_the_apis_json_measure_is_what_postgresql_prints_back(value: Any,
                                                              user_db_url: str) -> None:
    """The write check and the read check measure JSON the same way, so every JSON value
    the API accepts reads back (floats are the case where Python and jsonb differ)."""
    with psycopg.connect(user_db_url) as conn:
        row = conn.execute("select octet_length(%s::jsonb::text)", (Jsonb(value),)).fetchone()
    assert row is not None and json_text_bytes(value) >= row[0]
    assert json_text_bytes(value) - row[0] <= 1  # only -0.0 prints one byte shorter

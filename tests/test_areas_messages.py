"""Replies are counted in usage records, and messages form branches — the same on main and
on the user's own database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.areas_support import Place, place

__all__ = ["place"]


async def check_usage_is_upserted_once_per_day_and_model(place: Place) -> None:
    conversation_id, first = await place.conversation_with_reply("one two three")
    second = await place.create(f"/api/conversations/{conversation_id}/messages",
                                {"content": "four five"})
    usage = (await place.call("GET", "/api/usage", expect=200)).json()
    today = datetime.now(UTC).date().isoformat()
    replies = [first["assistant_message"], second["assistant_message"]]
    assert [(r["date"], r["model"], r["request_count"]) for r in usage["items"]] == [
        (today, "offline", 2)]
    assert usage["items"][0]["input_tokens"] == sum(r["input_tokens"] for r in replies)
    assert usage["items"][0]["output_tokens"] == sum(r["output_tokens"] for r in replies)
    assert usage["totals"]["request_count"] == 2 and usage["totals"]["cost"] == 0
    assert place.count("usage_records") == 1

    await place.conversation_with_reply("another conversation, same day and model")
    assert place.count("usage_records") == 1
    assert place.count("usage_records", "request_count = 3") == 1
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    assert await place.items("/api/usage", since=tomorrow) == []
    assert await place.items("/api/usage", model="other") == []
    await place.error("GET", "/api/usage", 422, "invalid_input",
                      params={"since": tomorrow, "until": today})


async def check_posting_with_a_parent_starts_a_branch_that_the_model_follows(
        place: Place) -> None:
    conversation = await place.create("/api/conversations", {"title": "Branches"})
    path = f"/api/conversations/{conversation['id']}/messages"
    first = await place.create(path, {"content": "first question"})
    u1, a1 = first["user_message"], first["assistant_message"]
    assert (u1["parent_message_id"], u1["branch_index"]) == (None, 0)
    assert (a1["parent_message_id"], a1["branch_index"]) == (u1["id"], 0)

    second = await place.create(path, {"content": "second question"})
    assert second["user_message"]["parent_message_id"] == a1["id"]
    assert second["user_message"]["branch_index"] == 0

    edited = await place.create(path, {"content": "second, edited",
                                       "parent_message_id": a1["id"]})
    assert edited["user_message"]["parent_message_id"] == a1["id"]
    assert edited["user_message"]["branch_index"] == 1
    # The reply saw its branch only: one earlier question, not the abandoned "second".
    assert "1 earlier message from you" in edited["assistant_message"]["content"]

    # Without a parent, the conversation continues from its latest message.
    third = await place.create(path, {"content": "third"})
    assert third["user_message"]["parent_message_id"] == edited["assistant_message"]["id"]
    listed = await place.items(path)
    assert [m["branch_index"] for m in listed] == [0, 0, 0, 0, 1, 0, 0, 0]
    assert place.count("messages") == 8


async def check_a_parent_from_elsewhere_is_refused_and_nothing_is_stored(
        place: Place) -> None:
    _, reply = await place.conversation_with_reply()
    other = await place.create("/api/conversations", {"title": "Other"})
    before = place.count("messages")
    path = f"/api/conversations/{other['id']}/messages"
    await place.error("POST", path, 422, "invalid_input",
                      json={"content": "x", "parent_message_id": reply["user_message"]["id"]})
    await place.error("POST", path, 404, "not_found",
                      json={"content": "x", "parent_message_id": str(uuid.uuid4())})
    assert place.count("messages") == before


async def test_usage_records_are_upserted_on_every_reply(place: Place) -> None:
    await check_usage_is_upserted_once_per_day_and_model(place)


async def test_messages_branch_from_a_parent_in_the_same_conversation(place: Place) -> None:
    await check_posting_with_a_parent_starts_a_branch_that_the_model_follows(place)
    await check_a_parent_from_elsewhere_is_refused_and_nothing_is_stored(place)

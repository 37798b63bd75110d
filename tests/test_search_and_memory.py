"""Memories, memory extraction and search — for a user on main and for a user on their own
database, always scoped to the signed-in user."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import psycopg
import pytest

from byodb.assistant.extraction import MemoryCandidate, extract_by_rules, parse_model_memories
from tests.conftest import Api, count_rows
from tests.placement import PLACEMENTS, Placed, content_count, place_user


@pytest.fixture(params=PLACEMENTS)
async def ann(request: pytest.FixtureRequest, api: Api, main_url: str,
              user_db_url: str) -> Placed:
    return await place_user(api, f"ann-{uuid.uuid4().hex[:6]}", request.param, main_url,
                            user_db_url)


async def _memory(api: Api, user: str, content: str, **extra: object) -> dict[str, object]:
    created = await api.post("/api/memories", user, json={"content": content, **extra})
    assert created.status_code == 201, created.text
    body: dict[str, object] = created.json()
    return body


async def _chat(api: Api, user: str, *contents: str) -> str:
    conversation = (await api.post("/api/conversations", user, json={})).json()
    for content in contents:
        sent = await api.post(f"/api/conversations/{conversation['id']}/messages", user,
                              json={"content": content})
        assert sent.status_code == 201, sent.text
    # The reply does not wait for the exchange's embedding and memories: they follow it.
    await api.app.state.runtime.after_work.settled()
    return str(conversation["id"])


async def _search(api: Api, user: str, q: str, mode: str = "text") -> list[dict[str, object]]:
    found = await api.get("/api/search", user, params={"q": q, "mode": mode})
    assert found.status_code == 200, found.text
    items: list[dict[str, object]] = found.json()["items"]
    return items


def _ids(items: Sequence[dict[str, object]]) -> set[object]:
    return {item["id"] for item in items}


# -- memories ---------------------------------------------------------------------------------

async def test_memories_are_stored_with_embeddings_only_where_the_users_content_lives(
        api: Api, ann: Placed) -> None:
    memory = await _memory(api, ann.user, "Prefers tea over coffee", category="preference",
                           importance=0.8)
    assert memory["source"] == "manual" and memory["is_active"] is True
    assert "embedding" not in memory
    assert count_rows(ann.url, "select count(*) from byodb.memories where id = %s and "
                      "embedding is not null", memory["id"]) == 1
    assert content_count(ann.elsewhere, "memories", ann.user) == 0

    changed = await api.request("PATCH", f"/api/memories/{memory['id']}", ann.user,
                                json={"is_active": False, "importance": 0.2,
                                      "category": "drinks"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["is_active"], changed.json()["importance"],
            changed.json()["category"]) == (False, 0.2, "drinks")
    inactive = (await api.get("/api/memories", ann.user, params={"active": "false"})).json()
    assert [m["id"] for m in inactive["items"]] == [memory["id"]]
    assert (await api.get("/api/memories", ann.user, params={"active": "true"})
            ).json()["items"] == []
    by_category = (await api.get("/api/memories", ann.user, params={"category": "drinks"})
                   ).json()["items"]
    assert [m["id"] for m in by_category] == [memory["id"]]

    deleted = await api.request("DELETE", f"/api/memories/{memory['id']}", ann.user)
    assert deleted.status_code == 204
    assert (await api.get(f"/api/memories/{memory['id']}", ann.user)).status_code == 404
    assert content_count(ann.url, "memories", ann.user) == 0


async def test_editing_a_memory_re_embeds_it(api: Api, main_url: str) -> None:
    memory = await _memory(api, "eve", "Owns a sailing boat")
    await api.request("PATCH", f"/api/memories/{memory['id']}", "eve",
                      json={"content": "Plays the cello in an orchestra"})
    found = await _search(api, "eve", "cello orchestra", mode="semantic")
    assert found[0]["id"] == memory["id"]
    assert found[0]["snippet"] == "Plays the cello in an orchestra"


async def test_bad_memory_input_is_refused_and_stores_nothing(api: Api, main_url: str) -> None:
    for body in ({"content": ""}, {"content": "   "}, {"content": "fine", "importance": 1.5},
                 {"content": "fine", "importance": -0.1},
                 {"content": "fine", "category": "x" * 101}, {"category": "no content"}):
        refused = await api.post("/api/memories", "bea", json=body)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["code"] == "invalid_input"
    assert count_rows(main_url, "select count(*) from byodb.memories") == 0


async def test_bad_memory_changes_are_refused_and_change_nothing(api: Api,
                                                                 main_url: str) -> None:
    memory = await _memory(api, "bea", "Likes jazz", importance=0.5)
    for body in ({"importance": 2}, {"importance": "high"}, {"content": ""},
                 {"is_active": None}, {"content": None}):
        refused = await api.request("PATCH", f"/api/memories/{memory['id']}", "bea",
                                    json=body)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["code"] == "invalid_input"
    after = (await api.get(f"/api/memories/{memory['id']}", "bea")).json()
    assert (after["content"], after["importance"], after["is_active"]) == \
        ("Likes jazz", 0.5, True)


async def test_another_users_memory_is_not_found_and_stays_untouched(api: Api,
                                                                     main_url: str) -> None:
    memory = await _memory(api, "owner", "Has a cat called Miso")
    path = f"/api/memories/{memory['id']}"
    assert (await api.get(path, "intruder")).status_code == 404
    patched = await api.request("PATCH", path, "intruder", json={"content": "hacked"})
    assert patched.status_code == 404 and patched.json()["error"]["code"] == "not_found"
    assert (await api.request("DELETE", path, "intruder")).status_code == 404
    assert (await api.get(f"/api/memories/{uuid.uuid4()}", "owner")).status_code == 404
    assert (await api.get("/api/memories", "intruder")).json()["items"] == []
    assert (await api.get(path, "owner")).json()["content"] == "Has a cat called Miso"


# -- extraction after an exchange -------------------------------------------------------------

async def test_an_exchange_embeds_its_messages_and_extracts_memories_once(
        api: Api, ann: Placed) -> None:
    statement = "Hi! My name is Ann Lee and I live in Berlin. I love hiking in the Alps."
    conversation_id = await _chat(api, ann.user, statement)
    assert count_rows(ann.url, "select count(*) from byodb.messages where user_id = %s and "
                      "embedding is not null", ann.user) == 2

    items = (await api.get("/api/memories", ann.user)).json()["items"]
    contents = {m["content"] for m in items}
    assert contents == {"The user's name is Ann Lee.", "The user lives in Berlin.",
                        "The user loves hiking in the Alps."}
    user_message = count_rows(ann.url, "select count(*) from byodb.messages m join "
                              "byodb.memories r on r.source_message_id = m.id where "
                              "m.role = 'user' and r.source = 'extracted' and "
                              "r.source_conversation_id = %s", conversation_id)
    assert user_message == 3
    assert count_rows(ann.url, "select count(*) from byodb.memories where user_id = %s and "
                      "embedding is not null", ann.user) == 3
    assert content_count(ann.elsewhere, "memories", ann.user) == 0

    # Saying it again (in other words' case and punctuation) adds nothing.
    await _chat(api, ann.user, "my name is ann lee", "I LOVE hiking in the Alps!")
    assert content_count(ann.url, "memories", ann.user) == 3


def test_rules_turn_first_person_statements_into_facts_about_the_user() -> None:
    found = extract_by_rules("I love hiking and I live in Oslo, near the fjord. I don't "
                             "enjoy crowds. Remember that my flight is at 9! I like it.")
    assert [c.content for c in found] == [
        "The user loves hiking.", "The user lives in Oslo.", "The user does not enjoy crowds.",
        "The user's flight is at 9."]
    assert [c.category for c in found] == ["preference", "location", "preference", "note"]


def test_a_models_answer_is_read_strictly() -> None:
    found = parse_model_memories('Sure! [{"content": "The user  is vegan", "category": '
                                 '"preference", "importance": 7}, {"content": 3}, "x"]')
    assert found == [MemoryCandidate("The user is vegan", "preference", 1.0)]
    with pytest.raises(ValueError):
        parse_model_memories("I found nothing worth remembering.")


async def test_a_memory_the_user_switched_off_is_not_extracted_again(api: Api,
                                                                     main_url: str) -> None:
    await _chat(api, "finn", "I work as a carpenter.")
    memory = (await api.get("/api/memories", "finn")).json()["items"][0]
    assert memory["content"] == "The user works as a carpenter."
    await api.request("PATCH", f"/api/memories/{memory['id']}", "finn",
                      json={"is_active": False})
    await _chat(api, "finn", "I work as a carpenter")
    assert [m["id"] for m in (await api.get("/api/memories", "finn")).json()["items"]] == \
        [memory["id"]]


async def test_small_talk_and_questions_create_no_memories(api: Api, main_url: str) -> None:
    await _chat(api, "gus", "What's the weather like today?", "Do you think I like jazz?",
                "I would like a summary of our chat.")
    assert count_rows(main_url, "select count(*) from byodb.memories") == 0


# -- search -----------------------------------------------------------------------------------

def _insert_note(url: str, user: str, title: str, content: str) -> str:
    note_id = str(uuid.uuid4())
    with psycopg.connect(url) as conn:
        conn.execute("insert into byodb.notes (id, user_id, title, content) values "
                     "(%s, %s, %s, %s)", (note_id, user, title, content))
    return note_id


async def test_text_search_finds_the_users_content_and_never_another_users(
        api: Api, ann: Placed, main_url: str) -> None:
    conversation = (await api.post("/api/conversations", ann.user,
                                   json={"title": "Planning the glacier hike"})).json()
    sent = (await api.post(f"/api/conversations/{conversation['id']}/messages", ann.user,
                           json={"content": "Which boots are best for a glacier hike?"})).json()
    memory = await _memory(api, ann.user, "Is training for a glacier crossing")
    note_id = _insert_note(ann.url, ann.user, "Packing list",
                           "Crampons, rope and a helmet for the glacier.")
    # The same words in another user's content, on main.
    theirs = (await api.post("/api/conversations", "zed",
                             json={"title": "My glacier hike"})).json()
    their_memory = await _memory(api, "zed", "Crossed a glacier last year")

    items = await _search(api, ann.user, "glacier")
    assert {conversation["id"], sent["user_message"]["id"], memory["id"], note_id} <= \
        _ids(items)
    assert not _ids(items) & {theirs["id"], their_memory["id"]}
    by_id = {item["id"]: item for item in items}
    assert by_id[sent["user_message"]["id"]]["type"] == "message"
    assert by_id[sent["user_message"]["id"]]["conversation_id"] == conversation["id"]
    assert by_id[note_id]["type"] == "note" and "glacier" in str(by_id[note_id]["snippet"])
    assert by_id[conversation["id"]]["title"] == "Planning the glacier hike"
    scores = [float(str(item["score"])) for item in items]
    assert scores == sorted(scores, reverse=True)

    # Web-search syntax: an exact phrase.
    phrase = await _search(api, ann.user, '"glacier crossing"')
    assert [item["id"] for item in phrase] == [memory["id"]]
    assert await _search(api, ann.user, "volcano") == []


async def test_semantic_search_ranks_related_content_first_and_stays_in_scope(
        api: Api, ann: Placed) -> None:
    dog = await _memory(api, ann.user, "My dog likes walks in the park")
    await _memory(api, ann.user, "Quarterly tax filing deadline is in April")
    uploaded = await api.post("/api/files", ann.user, files={"file": (
        "garden.md", b"# Garden\n\nTomatoes need sun, water and a stake to climb.",
        "text/markdown")})
    assert uploaded.status_code == 201, uploaded.text
    theirs = await _memory(api, "zed", "The dog went for a walk in the park")

    items = await _search(api, ann.user, "the dog went for a walk in the park", "semantic")
    assert items[0]["id"] == dog["id"] and items[0]["type"] == "memory"
    assert theirs["id"] not in _ids(items)
    assert all(0 < float(str(item["score"])) <= 1 for item in items)

    tomatoes = await _search(api, ann.user, "growing tomatoes in the sun", "semantic")
    assert tomatoes[0]["type"] == "file_chunk"
    assert tomatoes[0]["file_id"] == uploaded.json()["id"]
    assert tomatoes[0]["title"] == "garden.md"


async def test_semantic_search_finds_messages_after_an_exchange(api: Api,
                                                                main_url: str) -> None:
    conversation_id = await _chat(api, "hal", "Recommend a recipe for sourdough bread")
    items = await _search(api, "hal", "sourdough bread recipe", "semantic")
    first = items[0]
    assert first["type"] == "message" and first["conversation_id"] == conversation_id


async def test_a_bad_search_is_refused_with_a_clear_error(api: Api, main_url: str) -> None:
    for params in ({"q": ""}, {"q": "   "}, {}, {"q": "x", "mode": "fuzzy"},
                   {"q": "x", "limit": "0"}, {"q": "x" * 501}):
        refused = await api.get("/api/search", "ivy", params=params)
        assert refused.status_code == 422, params
        assert refused.json()["error"]["code"] == "invalid_input"


async def test_search_needs_a_signed_in_user(api: Api, main_url: str) -> None:
    assert (await api.get("/api/search", params={"q": "x"})).status_code == 401

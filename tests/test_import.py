"""Import: a byodb export, a ChatGPT export or a Claude export in; idempotent, all or
nothing, written wherever the user's content lives."""

from __future__ import annotations

import json
import uuid

from byodb.services.portability.ids import derived_id
from tests.conftest import Api, count_rows
from tests.portability_support import (
    FILE_BYTES,
    connect_own_database,
    content_counts,
    export_zip,
    finished,
    seed_content,
    table_rows,
    upload,
    without_ids,
    zip_of,
)


def chatgpt_export() -> list[dict[str, object]]:
    """Two conversations as ChatGPT exports them: a mapping tree with a hidden system node,
    and an edited question (two children of one node)."""
    def node(node_id: str, parent: str | None, children: list[str], role: str | None,
             text: str = "", at: float = 1_700_000_000.0, **meta: object) -> dict[str, object]:
        message = None if role is None else {
            "id": node_id, "author": {"role": role, "name": None, "metadata": {}},
            "create_time": at, "update_time": None,
            "content": {"content_type": "text", "parts": [text]},
            "status": "finished_successfully", "metadata": meta}
        return {"id": node_id, "message": message, "parent": parent, "children": children}

    mapping = {
        "root": node("root", None, ["sys"], None),
        "sys": node("sys", "root", ["q1"], "system", "", is_visually_hidden_from_conversation=True),
        "q1": node("q1", "sys", ["a1"], "user", "What is a heat pump?", 1_700_000_001.0),
        "a1": node("a1", "q1", ["q2", "q2b"], "assistant", "It moves heat.", 1_700_000_002.0,
                   model_slug="gpt-4o"),
        "q2": node("q2", "a1", ["a2"], "user", "Is it efficient?", 1_700_000_003.0),
        "a2": node("a2", "q2", [], "assistant", "Very.", 1_700_000_004.0),
        "q2b": node("q2b", "a1", [], "user", "Is it loud?", 1_700_000_005.0),
    }
    return [
        {"title": "Heat pumps", "create_time": 1_700_000_000.5, "update_time": 1_700_000_006.0,
         "mapping": mapping, "current_node": "a2", "conversation_id": "c-heat",
         "id": "c-heat", "default_model_slug": "gpt-4o", "moderation_results": []},
        {"title": "Empty", "create_time": 1_700_000_100.0, "update_time": 1_700_000_100.0,
         "mapping": {"r": node("r", None, [], None)}, "current_node": "r", "id": "c-empty"},
    ]


def claude_export() -> list[dict[str, object]]:
    return [{
        "uuid": "5f0c1c9e-0000-4000-8000-000000000001", "name": "Sourdough",
        "created_at": "2024-03-01T10:00:00.000000Z", "updated_at": "2024-03-01T10:05:00Z",
        "account": {"uuid": "acc"},
        "chat_messages": [
            {"uuid": "m1", "sender": "human", "text": "How long to proof?",
             "created_at": "2024-03-01T10:00:01Z", "attachments": [], "files": []},
            {"uuid": "m2", "sender": "assistant", "text": "",
             "content": [{"type": "text", "text": "About 4 hours."}],
             "created_at": "2024-03-01T10:00:02Z"},
        ]}]


async def test_export_import_into_a_fresh_account_and_export_again_gives_the_same_tables(
        api: Api, main_url: str) -> None:
    await seed_content(api, "ann")
    original = await export_zip(api, "ann")
    data = original.fp.getvalue()  # type: ignore[union-attr]

    job = await finished(api, "bea", await upload(api, "bea", data))
    assert job["status"] == "completed", job
    assert job["source"] == "byodb" and job["result"]["already_present"] == 0
    again = await export_zip(api, "bea")
    for name in original.namelist():
        if name.startswith("tables/"):
            table = name.removeprefix("tables/").removesuffix(".jsonl")
            assert without_ids(again, table) == without_ids(original, table), table
    [stored] = table_rows(again, "files")
    assert again.read(stored["content"]) == FILE_BYTES
    # ann's rows are untouched and still hers.
    assert content_counts(main_url, "ann") == {
        t: len(table_rows(original, t)) for t in content_counts(main_url, "ann")}


async def test_importing_the_same_file_twice_adds_nothing(api: Api, main_url: str) -> None:
    await seed_content(api, "cy")
    data = (await api.get("/api/export", "cy")).content
    first = await finished(api, "dee", await upload(api, "dee", data))
    assert first["result"]["created"] > 0
    counts = content_counts(main_url, "dee")
    second = await finished(api, "dee", await upload(api, "dee", data))
    assert second["status"] == "completed"
    assert second["result"]["created"] == 0
    assert second["result"]["already_present"] == first["result"]["created"]
    assert content_counts(main_url, "dee") == counts
    # Restoring one's own export into the same account also finds every row there.
    own = await finished(api, "cy", await upload(api, "cy", data))
    assert own["result"]["created"] == 0


async def test_a_chatgpt_export_imports_with_its_branches_onto_the_users_database(
        api: Api, main_url: str, user_db_url: str) -> None:
    await connect_own_database(api, "eve", user_db_url)
    data = json.dumps(chatgpt_export()).encode()
    job = await finished(api, "eve", await upload(api, "eve", data, "conversations.json"))
    assert job["status"] == "completed", job
    assert job["source"] == "chatgpt"
    assert job["result"]["rows"] == {"conversations": 2, "messages": 5}

    listed = (await api.get("/api/conversations", "eve")).json()["items"]
    heat = next(c for c in listed if c["title"] == "Heat pumps")
    messages = (await api.get(f"/api/conversations/{heat['id']}/messages", "eve")).json()
    items = messages["items"] if isinstance(messages, dict) else messages
    by_text = {m["content"]: m for m in items}
    assert set(by_text) == {"What is a heat pump?", "It moves heat.", "Is it efficient?",
                            "Very.", "Is it loud?"}
    answer = by_text["It moves heat."]
    assert answer["model"] == "gpt-4o"
    # The hidden system node is left out; its child is a first message.
    assert by_text["What is a heat pump?"]["parent_message_id"] is None
    assert by_text["Is it efficient?"]["parent_message_id"] == answer["id"]
    assert by_text["Is it loud?"]["parent_message_id"] == answer["id"]
    assert {by_text["Is it efficient?"]["branch_index"],
            by_text["Is it loud?"]["branch_index"]} == {0, 1}
    # Written on eve's database, not on main.
    assert count_rows(user_db_url, "select count(*) from byodb.messages where user_id = %s",
                      "eve") == 5
    assert count_rows(main_url, "select count(*) from byodb.messages where user_id = %s",
                      "eve") == 0

    # The same export as ChatGPT mails it (a zip) is the same rows: nothing new.
    zipped = zip_of({"conversations.json": data, "chat.html": b"<html></html>",
                     "user.json": b"{}"})
    again = await finished(api, "eve", await upload(api, "eve", zipped))
    assert again["status"] == "completed" and again["result"]["created"] == 0


async def test_a_claude_export_imports(api: Api, main_url: str) -> None:
    data = json.dumps(claude_export()).encode()
    job = await finished(api, "fay", await upload(api, "fay", data, "conversations.json"))
    assert job["status"] == "completed", job
    assert job["source"] == "claude"
    [conversation] = (await api.get("/api/conversations", "fay")).json()["items"]
    assert conversation["title"] == "Sourdough"
    assert conversation["created_at"].startswith("2024-03-01T10:00:00")
    messages = (await api.get(f"/api/conversations/{conversation['id']}/messages",
                              "fay")).json()
    items = messages["items"] if isinstance(messages, dict) else messages
    assert [(m["role"], m["content"]) for m in items] == [
        ("user", "How long to proof?"), ("assistant", "About 4 hours.")]
    assert items[1]["parent_message_id"] == items[0]["id"]
    again = await finished(api, "fay", await upload(api, "fay", data, "conversations.json"))
    assert again["result"]["created"] == 0
    assert count_rows(main_url, "select count(*) from byodb.messages where user_id = %s",
                      "fay") == 2


async def test_an_export_reusing_another_accounts_ids_is_refused_and_writes_nothing(
        api: Api, main_url: str) -> None:
    await seed_content(api, "gil")
    archive = await export_zip(api, "gil")
    # The file claims to be hal's own export (so its ids would be kept), but its rows are
    # gil's: importing it must not touch gil's rows nor write anything for hal.
    manifest = json.loads(archive.read("manifest.json"))
    manifest["user_id"] = "hal"
    members = {n: archive.read(n) for n in archive.namelist()}
    members["manifest.json"] = json.dumps(manifest).encode()
    job = await finished(api, "hal", await upload(api, "hal", zip_of(members)))
    assert job["status"] == "failed"
    assert job["error"]["code"] == "import_id_refused"
    assert set(content_counts(main_url, "hal").values()) == {0}
    assert count_rows(main_url, "select count(*) from byodb.messages where user_id = %s",
                      "gil") == 6


async def test_a_refusal_does_not_tell_whether_an_id_exists_in_another_account(
        api: Api, main_url: str) -> None:
    await seed_content(api, "ivo")
    [message, *_] = table_rows(await export_zip(api, "ivo"), "messages")
    manifest = {"format": "byodb-export", "format_version": 1, "files": {}, "user_id": "jan"}

    async def refusal(conversation_id: str) -> dict[str, object]:
        row = {**message, "id": str(uuid.uuid4()), "conversation_id": conversation_id,
               "parent_message_id": None, "user_id": "jan"}
        data = zip_of({"manifest.json": json.dumps(manifest).encode(),
                       "tables/messages.jsonl": json.dumps(row).encode() + b"\n"})
        job = await finished(api, "jan", await upload(api, "jan", data))
        assert job["status"] == "failed", job
        error: dict[str, object] = job["error"]
        return error

    # A conversation of ivo's and one that exists nowhere: the same answer, word for word.
    of_another_account = await refusal(message["conversation_id"])
    of_nobody = await refusal(str(uuid.uuid4()))
    assert of_another_account == of_nobody
    assert of_nobody["code"] == "import_id_refused"
    assert set(content_counts(main_url, "jan").values()) == {0}


def test_derived_ids_differ_per_user() -> None:
    assert derived_id("a", "chatgpt", "x") == derived_id("a", "chatgpt", "x")
    assert derived_id("a", "chatgpt", "x") != derived_id("b", "chatgpt", "x")
    assert isinstance(derived_id("a", "x"), uuid.UUID)


async def test_a_large_chatgpt_export_imports_in_full(api: Api, main_url: str) -> None:
    def conversation(index: int) -> dict[str, object]:
        mapping: dict[str, object] = {"root": {"id": "root", "message": None, "parent": None,
                                                "children": ["n0"]}}
        for turn in range(10):
            mapping[f"n{turn}"] = {
                "id": f"n{turn}", "parent": "root" if turn == 0 else f"n{turn - 1}",
                "children": [f"n{turn + 1}"] if turn < 9 else [],
                "message": {"id": f"n{turn}", "author": {"role": ("user", "assistant")[turn % 2]},
                            "create_time": 1_700_000_000.0 + index * 100 + turn,
                            "content": {"content_type": "text",
                                        "parts": [f"turn {turn} " + "lorem ipsum " * 90]}}}
        return {"id": f"c{index}", "title": f"Chat {index}", "create_time": 1_700_000_000.0,
                "update_time": 1_700_000_000.0, "mapping": mapping}

    data = json.dumps([conversation(i) for i in range(300)]).encode()
    assert len(data) > 3_000_000  # several upload chunks, spooled to disk
    job = await finished(api, "gus", await upload(api, "gus", data, "conversations.json"))
    assert job["status"] == "completed", job
    assert job["result"]["rows"] == {"conversations": 300, "messages": 3000}
    assert count_rows(main_url, "select count(*) from byodb.messages where user_id = %s",
                      "gus") == 3000


async def test_text_with_tabs_backslashes_and_line_breaks_arrives_unchanged(
        api: Api, main_url: str) -> None:
    text = "a\tb\\c\nd\r\ne \\N \\x00ff 🎉 \u2028 end\\"
    export = [{"id": "c-escapes", "title": "Tab\there \\ too", "create_time": 1_700_000_000.0,
               "mapping": {"q": {"id": "q", "parent": None, "children": [], "message": {
                   "id": "q", "author": {"role": "user"}, "create_time": 1_700_000_001.0,
                   "content": {"content_type": "text", "parts": [text]}}}}}]
    job = await finished(api, "uma", await upload(api, "uma", json.dumps(export).encode(),
                                                  "conversations.json"))
    assert job["status"] == "completed", job
    [conversation] = (await api.get("/api/conversations", "uma")).json()["items"]
    assert conversation["title"] == "Tab\there \\ too"
    messages = (await api.get(f"/api/conversations/{conversation['id']}/messages",
                              "uma")).json()
    items = messages["items"] if isinstance(messages, dict) else messages
    assert [m["content"] for m in items] == [text]

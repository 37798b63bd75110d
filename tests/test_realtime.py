"""BYOD_REALTIME: a write in one tab reaches the user's other tabs as a server-sent event —
also through another replica (LISTEN/NOTIFY on main) — with ids only, never content, and
never another user's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from byodb.settings import Settings
from byodb.web.realtime import MAX_STREAMS_PER_USER, RESYNC, ChangeHub, ContentChange
from tests.conftest import Api
from tests.test_flags import app_with, connect


def events_of(body: str) -> list[tuple[str, Any]]:
    events = []
    for block in body.split("\n\n"):
        lines = block.splitlines()
        name = next((line[6:].strip() for line in lines if line.startswith("event:")), None)
        data = next((line[5:].strip() for line in lines if line.startswith("data:")), None)
        if name is not None and data is not None:
            events.append((name, json.loads(data)))
    return events


async def until_listening(api: Api, user_id: str, streams: int = 1) -> None:
    hub: ChangeHub = api.app.state.changes
    while hub.subscribers(user_id) < streams:
        await asyncio.sleep(0.02)


async def test_a_write_reaches_the_users_tab_on_another_replica_ids_only(
        settings: Settings, main_url: str, user_db_url: str) -> None:
    async with app_with(settings, main_url, byod_realtime=True) as writer, \
            app_with(settings, main_url, byod_realtime=True, run_worker_in_app=False) as reader:
        await connect(writer, "ann", user_db_url)  # her content lives on her database
        stream = asyncio.create_task(reader.get("/api/changes?max_changes=1&max_seconds=60",
                                                "ann"))
        await asyncio.wait_for(until_listening(reader, "ann"), 30)
        # Another user's write is not hers to see.
        assert (await writer.post("/api/conversations", "bob",
                                  json={"title": "Bob's secret"})).status_code == 201
        created = await writer.client.post("/api/conversations",
                                           json={"title": "Ann's secret plan"},
                                           headers={**writer.headers("ann"),
                                                    "X-Byodb-Tab": "tab-1"})
        assert created.status_code == 201
        response = await asyncio.wait_for(stream, 60)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response.text)
    assert [name for name, _ in events] == ["ready", "change", "end"]
    assert events[1][1] == {"area": "conversations", "id": None, "tab": "tab-1"}
    assert "secret" not in response.text


async def test_the_changed_id_is_named_and_failed_writes_are_not_announced(
        settings: Settings, main_url: str) -> None:
    async with app_with(settings, main_url, byod_realtime=True) as api:
        conversation = (await api.post("/api/conversations", "cy", json={})).json()
        stream = asyncio.create_task(api.get("/api/changes?max_changes=1", "cy"))
        await asyncio.wait_for(until_listening(api, "cy"), 30)
        bad = await api.request("PATCH", f"/api/conversations/{conversation['id']}", "cy",
                                json={"title": 5})
        assert bad.status_code == 422
        renamed = await api.request("PATCH", f"/api/conversations/{conversation['id']}", "cy",
                                    json={"title": "Renamed"})
        assert renamed.status_code == 200
        events = events_of((await asyncio.wait_for(stream, 60)).text)
    assert [data for name, data in events if name == "change"] == [
        {"area": "conversations", "id": conversation["id"], "tab": None}]


async def test_streams_per_user_are_bounded(settings: Settings, main_url: str) -> None:
    async with app_with(settings, main_url, byod_realtime=True) as api:
        streams = [asyncio.create_task(api.get("/api/changes?max_changes=1", "di"))
                   for _ in range(MAX_STREAMS_PER_USER)]
        await asyncio.wait_for(until_listening(api, "di", MAX_STREAMS_PER_USER), 30)
        refused = await api.get("/api/changes", "di")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        await api.post("/api/notes", "di", json={"title": "t", "content": "c"})
        done = await asyncio.wait_for(asyncio.gather(*streams), 60)
    assert all(events_of(r.text)[1][1]["area"] == "notes" for r in done)


async def test_realtime_off_has_no_stream(settings: Settings, main_url: str) -> None:
    async with app_with(settings, main_url, byod_realtime=False) as api:
        refused = await api.get("/api/changes", "ed")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "realtime_disabled"


async def test_a_tab_that_falls_behind_gets_one_resync_not_a_growing_backlog() -> None:
    hub = ChangeHub(queue_size=2)
    slow = hub.open("fay")
    for number in range(5):
        hub.deliver(ContentChange("fay", "notes", f"n{number}"))
    assert slow.queue.qsize() == 1 and slow.queue.get_nowait() is RESYNC
    slow.close()
    slow.close()  # idempotent: the slot is free once
    assert hub.subscribers("fay") == 0


def test_notify_payloads_are_parsed_as_untrusted() -> None:
    assert ContentChange.parse('{"user_id": "ann", "area": "notes", "id": "x1", "tab": null}') \
        == ContentChange("ann", "notes", "x1", None)
    for hostile in ("not json", "[]", '{"user_id": 5, "area": "notes"}',
                    '{"user_id": "ann", "area": "../admin"}', '{"user_id": "", "area": "a"}',
                    '{"user_id": "' + "u" * 300 + '", "area": "notes"}'):
        assert ContentChange.parse(hostile) is None
    odd = ContentChange.parse('{"user_id": "ann", "area": "notes", "id": "<b>", "tab": 7}')
    assert odd == ContentChange("ann", "notes", None, None)

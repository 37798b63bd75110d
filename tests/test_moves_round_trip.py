"""A user's whole content — every one of the 29 tables, bytes, vectors, JSON and all — moves
to their own database when they connect, and back to main when they migrate back, row for
row identical, with nothing left behind on the side it left."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg

from byodb.content.deploy import deploy_content_schema
from byodb.instances.lifecycle.move_plan import content_tables
from byodb.instances.lifecycle.moves import move_user_content, row_hashes
from tests.conftest import Api

USER = "mover"


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(
        url, autocommit=True, options="-c search_path=pg_catalog,byodb")
    try:
        yield conn
    finally:
        await conn.close()


async def snapshot(url: str) -> dict[str, dict[str, str]]:
    """Per table: id → hash of the row, for USER."""
    async with connected(url) as conn:
        return {t.name: await row_hashes(conn, t, USER) for t in content_tables()}


async def fill_every_area(api: Api) -> None:
    async def create(path: str, body: dict[str, object]) -> dict[str, str]:
        response = await api.post(path, USER, json=body)
        assert response.status_code == 201, (path, response.text[:300])
        created: dict[str, str] = response.json()
        return created

    conversation = await create("/api/conversations", {"title": "Everything"})
    exchange = await create(f"/api/conversations/{conversation['id']}/messages",
                            {"content": "My name is Ada and I live in Lisbon."})
    message = exchange["assistant_message"]["id"]  # type: ignore[index]
    await api.app.state.runtime.after_work.settled()  # its embedding and memories follow the reply
    await create(f"/api/conversations/{conversation['id']}/participants",
                 {"member_id": "friend", "role": "viewer"})
    await create(f"/api/messages/{message}/tool-calls", {"tool_name": "lookup",
                                                         "tool_args": {"q": "pg"}})
    await create(f"/api/messages/{message}/sources", {"url": "https://example.org"})
    await create(f"/api/messages/{message}/attachments", {
        "filename": "a.pdf", "mime_type": "application/pdf",
        "content": base64.b64encode(b"%PDF-1.7 bytes").decode()})
    await create("/api/memories", {"content": "Prefers tea over coffee", "importance": 0.7})
    uploaded = await api.post("/api/files", USER, files={
        "file": ("notes.txt", b"PostgreSQL keeps my data. " * 80, "text/plain")})
    assert uploaded.status_code == 201, uploaded.text
    project = await create("/api/projects", {"name": "Moving"})
    note = await create("/api/notes", {"title": "N", "content": "a note"})
    task = await create("/api/tasks", {"title": "T", "priority": "high"})
    tag = await create("/api/tags", {"name": "moved"})
    await create(f"/api/projects/{project['id']}/conversations",
                 {"conversation_id": conversation["id"]})
    await create(f"/api/projects/{project['id']}/notes", {"note_id": note["id"]})
    await create(f"/api/projects/{project['id']}/files", {"file_id": uploaded.json()["id"]})
    for kind, item in (("conversations", conversation), ("notes", note), ("tasks", task)):
        await create(f"/api/{kind}/{item['id']}/tags", {"tag_id": tag["id"]})
    await create("/api/bookmarks", {"message_id": message})
    await create("/api/snippets", {"title": "S", "content": "select 1;", "language": "sql"})
    await create("/api/tts-cache", {"hash": "h1", "text": "Hi", "voice": "alloy",
                                    "audio": base64.b64encode(b"RIFF....").decode()})
    deck = await create("/api/presentations", {"title": "Deck"})
    await create(f"/api/presentations/{deck['id']}/slides",
                 {"type": "title", "content": {"h": "Hello"}})
    await create(f"/api/presentations/{deck['id']}/outline-items", {"title": "Intro"})
    await create(f"/api/presentations/{deck['id']}/sessions", {})
    await create("/api/design-templates", {"name": "Dark", "config": {"bg": "#000"}})


async def test_every_table_moves_over_and_back_identically(api: Api, main_url: str,
                                                           user_db_url: str) -> None:
    await fill_every_area(api)
    on_main = await snapshot(main_url)
    empty = [name for name, rows in on_main.items() if not rows]
    assert not empty, f"the arrangement should fill every table; empty: {empty}"

    await api.put("/api/byod", USER, json={"url": user_db_url})
    state = await api.wait_for_state(USER, "connected", "error")
    assert state["connection_status"] == "connected", state
    assert await snapshot(user_db_url) == on_main
    assert not any((await snapshot(main_url)).values())

    moved_back = await api.post("/api/byod/disconnect", USER, json={"mode": "migrate"})
    assert moved_back.status_code == 202
    state = await api.wait_for_state(USER, "disconnected", "error")
    assert state["connection_status"] == "disconnected", state
    assert await snapshot(main_url) == on_main
    assert not any((await snapshot(user_db_url)).values())
    file_id = (await api.get("/api/files", USER)).json()["items"][0]["id"]
    content = await api.get(f"/api/files/{file_id}/content", USER)
    assert content.content == b"PostgreSQL keeps my data. " * 80


async def test_a_move_interrupted_at_any_point_resumes_without_loss_or_duplicates(
        api: Api, main_url: str, user_db_url: str) -> None:
    class Interrupted(Exception):
        pass

    async def die_before_deleting(message: str) -> None:
        if message.startswith("Removing"):
            raise Interrupted

    await fill_every_area(api)
    before = await snapshot(main_url)
    async with connected(main_url) as main, connected(user_db_url) as theirs:
        await deploy_content_schema(theirs)
        # Died after the target committed, before the source was emptied: run again.
        with suppress(Interrupted):
            await move_user_content(main, theirs, USER, lock_source_tables=False,
                                    progress=die_before_deleting)
        assert await snapshot(user_db_url) == before and await snapshot(main_url) == before
        report = await move_user_content(main, theirs, USER, lock_source_tables=False)
        assert report.total_rows == sum(len(rows) for rows in before.values())
        assert report.merged == report.total_rows  # all were there already
        assert await snapshot(user_db_url) == before  # no duplicates: same ids, same rows
        assert not any((await snapshot(main_url)).values())
        # Died after deleting, before switching over: running again changes nothing.
        assert (await move_user_content(main, theirs, USER,
                                        lock_source_tables=False)).total_rows == 0
        assert await snapshot(user_db_url) == before
        # And back to main, the way a "migrate back" goes.
        await move_user_content(theirs, main, USER, lock_source_tables=True)
        assert await snapshot(main_url) == before
        assert not any((await snapshot(user_db_url)).values())

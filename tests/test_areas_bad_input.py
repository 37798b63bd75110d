"""Bad input gets a clear 4xx and changes nothing: other users' ids and unknown ids are
``not_found``, invalid values ``invalid_input`` — on main and on the user's own database."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from tests.areas_support import Place, place
from tests.conftest import Api, count_rows

__all__ = ["place"]

_TABLES = ("conversations", "conversation_participants", "messages", "tool_calls", "sources",
           "attachments", "projects", "project_conversations", "project_notes", "notes",
           "tasks", "bookmarks", "snippets", "tags", "conversation_tags", "note_tags",
           "task_tags", "presentations", "slides", "outline_items", "presentation_sessions",
           "design_templates", "tts_cache", "usage_records", "activity_events")


def _counts(url: str, user: str) -> dict[str, int]:
    return {table: count_rows(url, f"select count(*) from byodb.{table} where user_id = %s",
                              user) for table in _TABLES}


async def _anns_content(api: Api) -> dict[str, str]:
    """Another user, on main, with one row of every kind a path or body can name."""
    async def made(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await api.post(path, "ann", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    conversation = await made("/api/conversations", {"title": "Ann's"})
    reply = await made(f"/api/conversations/{conversation['id']}/messages", {"content": "hi"})
    await made("/api/tts-cache", {"hash": "ann-hash", "text": "t", "voice": "v",
                                  "audio": "AAAA"})
    return {"conversation": conversation["id"], "message": reply["assistant_message"]["id"],
            "project": (await made("/api/projects", {"name": "Ann's"}))["id"],
            "note": (await made("/api/notes", {"title": "Ann's"}))["id"],
            "task": (await made("/api/tasks", {"title": "Ann's"}))["id"],
            "tag": (await made("/api/tags", {"name": "Ann's"}))["id"],
            "presentation": (await made("/api/presentations", {"title": "Ann's"}))["id"]}


async def test_other_users_ids_are_not_found_and_nothing_changes(
        place: Place, main_url: str) -> None:
    ann = await _anns_content(place.api)
    conversation = await place.create("/api/conversations", {"title": "Mine"})
    project = await place.create("/api/projects", {"name": "Mine"})
    tag = await place.create("/api/tags", {"name": "Mine"})
    anns_before = _counts(main_url, "ann")
    mine_before = _counts(place.url, place.user)
    unknown = str(uuid.uuid4())
    attempts: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", f"/api/conversations/{ann['conversation']}/participants", {"member_id": "m"}),
        ("GET", f"/api/conversations/{ann['conversation']}/participants", None),
        ("POST", f"/api/conversations/{ann['conversation']}/messages", {"content": "hi"}),
        ("POST", f"/api/conversations/{conversation['id']}/messages",
         {"content": "hi", "parent_message_id": ann["message"]}),
        ("GET", f"/api/messages/{ann['message']}", None),
        ("POST", f"/api/messages/{ann['message']}/tool-calls", {"tool_name": "t"}),
        ("POST", f"/api/messages/{ann['message']}/sources", {"url": "https://x.org"}),
        ("GET", f"/api/messages/{ann['message']}/attachments", None),
        ("POST", f"/api/projects/{ann['project']}/conversations",
         {"conversation_id": conversation["id"]}),
        ("POST", f"/api/projects/{project['id']}/conversations",
         {"conversation_id": ann["conversation"]}),
        ("POST", f"/api/projects/{project['id']}/notes", {"note_id": ann["note"]}),
        ("POST", f"/api/projects/{project['id']}/files", {"file_id": unknown}),
        ("POST", "/api/bookmarks", {"message_id": ann["message"]}),
        ("POST", "/api/tasks", {"title": "t", "source_message_id": ann["message"]}),
        ("POST", "/api/tasks", {"title": "t", "source_conversation_id": ann["conversation"]}),
        ("POST", "/api/snippets", {"title": "s", "content": "c",
                                   "source_message_id": ann["message"]}),
        ("POST", "/api/presentations", {"title": "p",
                                        "source_conversation_id": ann["conversation"]}),
        ("POST", f"/api/presentations/{ann['presentation']}/slides", {}),
        ("GET", f"/api/presentations/{ann['presentation']}/outline-items", None),
        ("POST", f"/api/presentations/{ann['presentation']}/sessions", {}),
        ("POST", f"/api/conversations/{conversation['id']}/tags", {"tag_id": ann["tag"]}),
        ("POST", f"/api/tasks/{ann['task']}/tags", {"tag_id": tag["id"]}),
        ("GET", f"/api/tags/{ann['tag']}/notes", None),
        ("GET", f"/api/notes/{ann['note']}/projects", None),
        ("PATCH", f"/api/notes/{ann['note']}", {"title": "mine now"}),
        ("PATCH", f"/api/tags/{ann['tag']}", {"name": "mine now"}),
        ("GET", f"/api/tasks/{ann['task']}", None),
        ("DELETE", f"/api/tasks/{ann['task']}", None),
        ("DELETE", f"/api/projects/{ann['project']}", None),
        ("DELETE", f"/api/conversations/{ann['conversation']}/tags/{tag['id']}", None),
        ("GET", "/api/bookmarks", {"conversation_id": ann["conversation"]}),
        ("GET", "/api/tts-cache/ann-hash", None),
        ("DELETE", "/api/tts-cache/ann-hash", None),
        ("PATCH", f"/api/projects/{unknown}", {"name": "x"}),
        ("DELETE", f"/api/conversations/{conversation['id']}/participants/nobody", None),
    ]
    for method, path, body in attempts:
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs = {"params": body} if method == "GET" else {"json": body}
        await place.error(method, path, 404, "not_found", **kwargs)
    assert _counts(main_url, "ann") == anns_before
    assert _counts(place.url, place.user) == mine_before


async def test_invalid_values_are_refused_and_nothing_changes(place: Place) -> None:
    conversation_id, reply = await place.conversation_with_reply()
    message = reply["assistant_message"]["id"]
    note = await place.create("/api/notes", {"title": "Keep", "content": "as is"})
    task = await place.create("/api/tasks", {"title": "Keep"})
    deck = await place.create("/api/presentations", {"title": "Keep"})
    before = _counts(place.url, place.user)
    big_json = {"blob": "x" * (256 * 1024)}
    attempts: list[tuple[str, str, Any]] = [
        # Enums.
        ("POST", "/api/tasks", {"title": "t", "status": "later"}),
        ("PATCH", f"/api/tasks/{task['id']}", {"priority": "asap"}),
        ("POST", "/api/tags", {"name": "t", "scope": "world"}),
        ("POST", f"/api/presentations/{deck['id']}/slides", {"type": "video"}),
        ("PATCH", f"/api/presentations/{deck['id']}", {"status": "published"}),
        ("POST", f"/api/conversations/{conversation_id}/participants",
         {"member_id": "m", "role": "admin"}),
        ("POST", f"/api/messages/{message}/tool-calls", {"tool_name": "t", "status": "run"}),
        # Sizes.
        ("POST", "/api/notes", {"title": "x" * 501}),
        ("POST", "/api/design-templates", {"name": "big", "config": big_json}),
        ("POST", f"/api/messages/{message}/tool-calls", {"tool_name": "t",
                                                         "tool_args": big_json}),
        ("POST", f"/api/conversations/{conversation_id}/messages",
         {"content": "x" * 100_001}),
        # Empty, null, wrong types, fields that are not the client's to set.
        ("POST", "/api/notes", {"title": "   "}),
        ("POST", "/api/notes", {"title": 123}),
        ("POST", "/api/notes", {}),
        ("PATCH", f"/api/notes/{note['id']}", {"title": None}),
        ("PATCH", f"/api/notes/{note['id']}", {"is_pinned": [1]}),
        ("PATCH", f"/api/notes/{note['id']}", {"user_id": "someone-else"}),
        ("PATCH", f"/api/tasks/{task['id']}", {"completed_at": "2030-01-01T00:00:00Z"}),
        ("POST", "/api/tasks", {"title": "t", "due_date": "tomorrow"}),
        ("POST", "/api/tasks", {"title": "t", "due_date": "2030-01-01T00:00:00"}),
        ("POST", f"/api/presentations/{deck['id']}/slides", {"position": -1}),
        ("POST", f"/api/conversations/{conversation_id}/messages",
         {"content": "x", "parent_message_id": "not-an-id"}),
        # Attachments: base64 and a size that must match the content.
        ("POST", f"/api/messages/{message}/attachments",
         {"filename": "a", "mime_type": "text/plain", "content": "not base64!"}),
        ("POST", f"/api/messages/{message}/attachments",
         {"filename": "a", "mime_type": "text/plain", "size": 99,
          "content": base64.b64encode(b"abc").decode()}),
        ("POST", f"/api/messages/{message}/attachments",
         {"filename": "a", "mime_type": "text/plain"}),
        # Queries and paths.
        ("GET", "/api/notes", {"limit": 0}),
        ("GET", "/api/notes", {"limit": 201}),
        ("GET", "/api/tasks", {"status": "later"}),
        ("GET", "/api/projects/not-a-uuid", None),
    ]
    for method, path, body in attempts:
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs = {"params": body} if method == "GET" else {"json": body}
        message_text = await place.error(method, path, 422, "invalid_input", **kwargs)
        assert "x" * 50 not in message_text  # the offending value is not echoed back
    assert _counts(place.url, place.user) == before
    unchanged = (await place.call("GET", f"/api/notes/{note['id']}", expect=200)).json()
    assert unchanged == note


async def test_the_api_documents_every_area_and_its_limits(api: Api) -> None:
    schema = (await api.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in ("/api/projects", "/api/notes", "/api/tasks", "/api/bookmarks",
                 "/api/snippets", "/api/tags", "/api/usage", "/api/tts-cache",
                 "/api/activity", "/api/presentations", "/api/design-templates",
                 "/api/messages/{message_id}/tool-calls",
                 "/api/conversations/{conversation_id}/participants",
                 "/api/conversations/{conversation_id}/tags",
                 "/api/projects/{project_id}/conversations",
                 "/api/presentations/{presentation_id}/slides"):
        assert path in paths, path
    models = schema["components"]["schemas"]
    assert models["NoteCreate"]["properties"]["title"]["maxLength"] == 500
    assert models["TaskCreate"]["properties"]["status"]["enum"] == [
        "todo", "in_progress", "done", "cancelled"]
    assert models["NoteUpdate"]["additionalProperties"] is False
    assert paths["/api/tasks"]["post"]["responses"].get("201")
    assert paths["/api/tasks/{task_id}"]["delete"]["responses"].get("204")

"""Every content area works the same for a user on main and for a user on their own
database, and its rows land only on the database that holds the user's content.

Connecting a database takes seconds (a deploy job), so each test runs several areas' checks
(``check_*``, each named for its promise) for one connected user.
"""

from __future__ import annotations

import base64

from tests.areas_support import Place, place

__all__ = ["place"]  # the fixture, imported for pytest


async def check_projects_group_conversations_and_notes(place: Place) -> None:
    project = await place.create("/api/projects", {"name": "Alpha", "color": "#f80"})
    assert project["is_archived"] is False and place.count("projects") == 1
    conversation = await place.create("/api/conversations", {"title": "Plan"})
    note = await place.create("/api/notes", {"title": "Idea"})
    base = f"/api/projects/{project['id']}"

    linked = await place.create(f"{base}/conversations", {"conversation_id": conversation["id"]})
    assert linked["id"] == conversation["id"] and linked["linked_at"]
    await place.error("POST", f"{base}/conversations", 409, "conflict",
                      json={"conversation_id": conversation["id"]})
    await place.create(f"{base}/notes", {"note_id": note["id"]})
    assert place.count("project_conversations") == place.count("project_notes") == 1
    assert [c["id"] for c in await place.items(f"{base}/conversations")] == [conversation["id"]]
    assert [n["id"] for n in await place.items(f"{base}/notes")] == [note["id"]]
    assert [p["id"] for p in await place.items(
        f"/api/conversations/{conversation['id']}/projects")] == [project["id"]]

    archived = await place.patch(base, {"is_archived": True, "description": "Q3"})
    assert archived["is_archived"] is True and archived["description"] == "Q3"
    assert await place.items("/api/projects") == []
    assert [p["id"] for p in await place.items("/api/projects", archived=True)] == [project["id"]]

    await place.delete(f"{base}/conversations/{conversation['id']}")
    await place.error("DELETE", f"{base}/conversations/{conversation['id']}", 404, "not_found")
    await place.delete(base)
    await place.error("GET", base, 404, "not_found")
    # The links went with the project; what they linked stays.
    assert place.count("project_notes") == place.count("projects") == 0
    assert place.count("notes") == place.count("conversations") == 1
    await place.delete(f"/api/notes/{note['id']}")
    await place.delete(f"/api/conversations/{conversation['id']}")


async def check_notes_are_pinned_first_and_archived_ones_hidden(place: Place) -> None:
    first = await place.create("/api/notes", {"title": "First", "content": "# one"})
    second = await place.create("/api/notes", {"title": "Second"})
    assert second["content"] == "" and place.count("notes") == 2
    await place.patch(f"/api/notes/{first['id']}", {"is_pinned": True})
    assert [n["id"] for n in await place.items("/api/notes")] == [first["id"], second["id"]]
    await place.patch(f"/api/notes/{second['id']}", {"is_archived": True, "content": "done"})
    assert [n["id"] for n in await place.items("/api/notes")] == [first["id"]]
    assert [n["content"] for n in await place.items("/api/notes", archived=True)] == ["done"]
    assert [n["id"] for n in await place.items("/api/notes", pinned=True)] == [first["id"]]
    await place.delete(f"/api/notes/{second['id']}")
    assert place.count("notes") == 1


async def check_completing_a_task_stamps_completed_at_and_reopening_clears_it(
        place: Place) -> None:
    task = await place.create("/api/tasks", {"title": "Ship", "priority": "high",
                                             "due_date": "2030-01-02T09:00:00Z"})
    assert task["status"] == "todo" and task["completed_at"] is None
    path = f"/api/tasks/{task['id']}"
    done = await place.patch(path, {"status": "done"})
    assert done["completed_at"] is not None
    renamed = await place.patch(path, {"status": "done", "title": "Shipped"})
    assert renamed["completed_at"] == done["completed_at"]  # still the first completion
    reopened = await place.patch(path, {"status": "in_progress"})
    assert reopened["completed_at"] is None
    assert place.count("tasks", "completed_at is null") == 1

    born_done = await place.create("/api/tasks", {"title": "Old", "status": "done"})
    assert born_done["completed_at"] is not None
    undated = await place.create("/api/tasks", {"title": "Someday"})
    # Due date first (none last), then newest.
    assert [t["id"] for t in await place.items("/api/tasks")] == [
        task["id"], undated["id"], born_done["id"]]
    assert [t["id"] for t in await place.items("/api/tasks", status="done")] == [born_done["id"]]
    completed = await place.items("/api/activity", event_type="task.completed")
    assert {e["subject_id"] for e in completed} == {task["id"], born_done["id"]}
    await place.delete(path)
    assert place.count("tasks") == 2


async def check_bookmarks_take_the_conversation_of_their_message_and_snippets_keep_source(
        place: Place) -> None:
    conversation_id, reply = await place.conversation_with_reply()
    message_id = reply["assistant_message"]["id"]
    bookmark = await place.create("/api/bookmarks", {"message_id": message_id, "note": "good"})
    assert bookmark["conversation_id"] == conversation_id
    assert [b["id"] for b in await place.items(
        "/api/bookmarks", conversation_id=conversation_id)] == [bookmark["id"]]
    changed = await place.patch(f"/api/bookmarks/{bookmark['id']}", {"note": None})
    assert changed["note"] is None

    snippet = await place.create("/api/snippets", {"title": "Loop", "content": "for x in y:",
                                                   "language": "python",
                                                   "source_message_id": message_id})
    assert snippet["source_message_id"] == message_id and place.count("snippets") == 1
    edited = await place.patch(f"/api/snippets/{snippet['id']}", {"content": "while True:"})
    assert edited["content"] == "while True:"
    assert [s["id"] for s in await place.items("/api/snippets", language="python")] == [
        snippet["id"]]
    await place.delete(f"/api/bookmarks/{bookmark['id']}")
    await place.delete(f"/api/snippets/{snippet['id']}")
    assert place.count("bookmarks") == place.count("snippets") == 0


async def check_tags_have_unique_names_and_label_conversations_notes_and_tasks(
        place: Place) -> None:
    work = await place.create("/api/tags", {"name": "Work", "color": "blue"})
    assert work["scope"] == "user"
    await place.error("POST", "/api/tags", 409, "conflict", json={"name": " work "})
    home = await place.create("/api/tags", {"name": "Home"})
    await place.error("PATCH", f"/api/tags/{home['id']}", 409, "conflict",
                      json={"name": "WORK"})
    assert place.count("tags") == 2
    assert [t["name"] for t in await place.items("/api/tags")] == ["Home", "Work"]

    conversation = await place.create("/api/conversations", {"title": "Tagged"})
    note = await place.create("/api/notes", {"title": "Tagged"})
    task = await place.create("/api/tasks", {"title": "Tagged"})
    for kind, item in (("conversations", conversation), ("notes", note), ("tasks", task)):
        tagged = await place.create(f"/api/{kind}/{item['id']}/tags", {"tag_id": work["id"]})
        assert tagged["name"] == "Work"
        await place.error("POST", f"/api/{kind}/{item['id']}/tags", 409, "conflict",
                          json={"tag_id": work["id"]})
        assert [t["id"] for t in await place.items(f"/api/{kind}/{item['id']}/tags")] == [
            work["id"]]
        assert [i["id"] for i in await place.items(f"/api/tags/{work['id']}/{kind}")] == [
            item["id"]]
    assert place.count("conversation_tags") == place.count("note_tags") == 1
    await place.delete(f"/api/notes/{note['id']}/tags/{work['id']}")
    assert place.count("note_tags") == 0

    renamed = await place.patch(f"/api/tags/{work['id']}", {"name": "Job"})
    assert renamed["name"] == "Job"
    await place.delete(f"/api/tags/{work['id']}")
    assert place.count("task_tags") == place.count("conversation_tags") == 0
    assert place.count("tasks") == 1


async def check_conversation_participants_are_added_once_with_a_role(place: Place) -> None:
    conversation = await place.create("/api/conversations", {"title": "Shared"})
    base = f"/api/conversations/{conversation['id']}/participants"
    zoe = await place.create(base, {"member_id": "zoe", "role": "collaborator"})
    assert zoe["role"] == "collaborator" and zoe["conversation_id"] == conversation["id"]
    await place.error("POST", base, 409, "conflict", json={"member_id": "zoe"})
    yan = await place.create(base, {"member_id": "yan"})
    assert yan["role"] == "viewer"
    assert [p["member_id"] for p in await place.items(base)] == ["zoe", "yan"]
    assert (await place.patch(f"{base}/zoe", {"role": "owner"}))["role"] == "owner"
    assert (await place.call("GET", f"{base}/zoe", expect=200)).json()["role"] == "owner"
    await place.delete(f"{base}/yan")
    await place.error("DELETE", f"{base}/yan", 404, "not_found")
    assert place.count("conversation_participants") == 1


async def check_presentations_keep_slides_and_outline_in_order_with_sessions(
        place: Place) -> None:
    deck = await place.create("/api/presentations", {"title": "Pitch"})
    assert deck["status"] == "draft"
    base = f"/api/presentations/{deck['id']}"
    title = await place.create(f"{base}/slides", {"type": "title", "content": {"h": "Hi"}})
    body = await place.create(f"{base}/slides", {"content": {"bullets": ["a", "b"]}})
    assert (title["position"], body["position"], body["type"]) == (0, 1, "content")
    await place.patch(f"{base}/slides/{title['id']}", {"position": 5})
    assert [s["id"] for s in await place.items(f"{base}/slides")] == [body["id"], title["id"]]

    for heading in ("Problem", "Solution"):
        await place.create(f"{base}/outline-items", {"title": heading})
    outline = await place.items(f"{base}/outline-items")
    assert [(o["position"], o["title"]) for o in outline] == [(0, "Problem"), (1, "Solution")]
    await place.patch(f"{base}/outline-items/{outline[0]['id']}", {"is_completed": True})

    session = await place.create(f"{base}/sessions", {})
    assert session["is_active"] is True and session["ended_at"] is None
    moved = await place.patch(f"{base}/sessions/{session['id']}", {"current_slide": 1})
    assert moved["current_slide"] == 1
    ended = await place.patch(f"{base}/sessions/{session['id']}", {"is_active": False})
    assert ended["ended_at"] is not None
    assert (await place.patch(base, {"status": "ready"}))["status"] == "ready"
    assert place.count("slides") == 2 and place.count("outline_items") == 2
    assert place.count("presentation_sessions") == 1

    await place.delete(base)
    assert place.count("slides") == place.count("outline_items") == 0
    assert place.count("presentation_sessions") == 0


async def check_only_one_design_template_is_the_default(place: Place) -> None:
    dark = await place.create("/api/design-templates",
                              {"name": "Dark", "config": {"bg": "#000"}, "is_default": True})
    light = await place.create("/api/design-templates", {"name": "Light", "is_default": True})
    templates = {t["name"]: t for t in await place.items("/api/design-templates")}
    assert templates["Light"]["is_default"] and not templates["Dark"]["is_default"]
    assert templates["Light"]["config"] == {}
    await place.patch(f"/api/design-templates/{dark['id']}", {"is_default": True})
    assert place.count("design_templates", "is_default") == 1
    await place.delete(f"/api/design-templates/{light['id']}")
    assert place.count("design_templates") == 1


async def check_messages_carry_tool_calls_sources_and_attachments(place: Place) -> None:
    _, reply = await place.conversation_with_reply()
    message_id = reply["assistant_message"]["id"]
    message = (await place.call("GET", f"/api/messages/{message_id}", expect=200)).json()
    assert message["status"] == "complete" and message["model"] == "offline"
    assert message["output_tokens"] > 0 and message["input_tokens"] > 0
    assert message["cost"] is None  # the offline model costs nothing measurable
    base = f"/api/messages/{message_id}"

    call = await place.create(f"{base}/tool-calls", {"tool_name": "search",
                                                     "tool_args": {"q": "pg"}})
    assert call["status"] == "pending"
    finished = await place.patch(f"{base}/tool-calls/{call['id']}",
                                 {"status": "complete", "result": [{"hit": 1}]})
    assert finished["result"] == [{"hit": 1}]
    await place.create(f"{base}/sources", {"url": "https://example.org/pg",
                                           "title": "PG"})
    assert [s["url"] for s in await place.items(f"{base}/sources")] == [
        "https://example.org/pg"]

    data = b"%PDF-1.7 not really"
    attachment = await place.create(f"{base}/attachments", {
        "filename": "a.pdf", "mime_type": "application/pdf",
        "content": base64.b64encode(data).decode()})
    assert attachment["size"] == len(data) and "content" not in attachment
    linked = await place.create(f"{base}/attachments", {
        "filename": "b.png", "mime_type": "image/png", "size": 10,
        "url": "https://example.org/b.png"})
    listed = await place.items(f"{base}/attachments")
    assert [a["id"] for a in listed] == [attachment["id"], linked["id"]]
    assert all("content" not in a for a in listed)
    fetched = (await place.call("GET", f"{base}/attachments/{attachment['id']}",
                                expect=200)).json()
    assert base64.b64decode(fetched["content"]) == data
    assert place.count("tool_calls") == place.count("sources") == 1
    assert place.count("attachments") == 2


async def test_projects_notes_and_tags_organise_content_where_it_lives(place: Place) -> None:
    await check_projects_group_conversations_and_notes(place)
    await check_notes_are_pinned_first_and_archived_ones_hidden(place)
    await check_tags_have_unique_names_and_label_conversations_notes_and_tasks(place)


async def test_tasks_bookmarks_and_snippets_round_trip_where_content_lives(
        place: Place) -> None:
    await check_completing_a_task_stamps_completed_at_and_reopening_clears_it(place)
    await check_bookmarks_take_the_conversation_of_their_message_and_snippets_keep_source(
        place)


async def test_conversation_participants_and_message_details_round_trip(
        place: Place) -> None:
    await check_conversation_participants_are_added_once_with_a_role(place)
    await check_messages_carry_tool_calls_sources_and_attachments(place)


async def test_presentations_and_design_templates_round_trip(place: Place) -> None:
    await check_presentations_keep_slides_and_outline_in_order_with_sessions(place)
    await check_only_one_design_template_is_the_default(place)
